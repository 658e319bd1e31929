"""yolov9: see target.py."""
