"""Client backend for chat-roulette-python servers (TCP JSON lines)."""
