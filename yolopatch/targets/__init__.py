"""Targets: the families of codebases with their own parse_model (one package each), the interface they share
(base), and their registry (registry)."""
