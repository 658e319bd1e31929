"""Model formats other than the yaml: each a plug-in that reads, lists and edits its own files."""
