"""What runs inside a gunicorn gevent worker: the ring reader, the
subscription index, heartbeats, per-stream queues and the Flask routes."""
