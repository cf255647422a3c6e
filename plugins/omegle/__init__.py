"""Omegle-protocol client backend: strangers from any Omegle-protocol server."""
