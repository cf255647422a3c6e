"""Tests of the Omegle-protocol client backend."""
