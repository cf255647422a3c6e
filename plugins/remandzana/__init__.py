"""remandzana backend: a client of a remandzana server (streamed HTML chat page, POST /send)."""
