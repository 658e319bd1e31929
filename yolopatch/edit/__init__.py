"""The steps of `apply`'s yaml edit: options, decisions, rows (commands.apply runs them)."""
