"""pytorchyolo (PyPI; eriklindernoren's PyTorch-YOLOv3): a codebase that builds darknet `.cfg` models."""
