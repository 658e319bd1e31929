"""Operators: one module per operator (its spec) and the registry that lists them."""
