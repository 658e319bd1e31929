"""yolopatch: add Involution and attention operators to YOLOv5 models, byte-faithfully and reversibly."""

__version__ = "0.2.0"
