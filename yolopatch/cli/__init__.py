"""The command line (Typer only): `main` builds the app from one module per command."""
