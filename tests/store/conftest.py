"""Store tests get a real redis-server per test (tests/redisproc.py)."""

from tests.redisproc import redis_server

__all__ = ["redis_server"]
