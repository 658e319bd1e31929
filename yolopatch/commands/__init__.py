"""One module per command: the core each CLI command calls."""
