"""Targets: families of codebases with their own parse_model. One module each; YOLOv5 is the first."""
