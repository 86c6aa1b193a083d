"""livegate's benchmark suite: load generator, workloads, resource meter and peers."""
