"""yolopatch: add Involution to YOLOv5 models, byte-faithfully and reversibly."""

__version__ = "0.1.0"
