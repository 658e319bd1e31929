"""yolov7: see target.py."""
