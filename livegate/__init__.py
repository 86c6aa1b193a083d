"""Core of livegate that every process shares: settings, channel names,
event ids, the Redis wire format and SSE frame encoding.

Nothing in this package performs I/O or imports gevent, so it is safe to
import in the gunicorn master, the subscriber process, gevent workers and
the ingest process alike, and it is tested without servers.
"""
