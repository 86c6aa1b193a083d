"""The pod's fan-out: one Redis subscriber process writing ready SSE frames
into a shared-memory ring that every gevent worker reads."""
