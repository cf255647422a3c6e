"""Client backend for pychat servers (raw ASCII TCP)."""
