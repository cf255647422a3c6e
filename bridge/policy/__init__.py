"""Moderation in the core: text normalising, content rules, bans and strikes, start throttling."""

__all__: list[str] = []
