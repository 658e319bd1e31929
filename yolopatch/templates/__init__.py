"""Operator sources: real modules that `check` imports and `inject` pastes (see yolopatch.paste)."""
