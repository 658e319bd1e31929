"""yolopatch: add operators (Involution, attention blocks, your own modules) to YOLO models, byte-faithfully and reversibly."""

__version__ = "0.2.0"
