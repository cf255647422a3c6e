"""The stranger-bridge test suite."""
