"""Peer servers that the benchmark compares livegate with."""
