"""Publishing into livegate: the publisher with auto-compare, and the demo feed."""
