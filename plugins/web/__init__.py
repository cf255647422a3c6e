"""The built-in web platform: an Omegle-protocol HTTP server and a small chat page."""
