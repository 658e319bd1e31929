"""yolov5: see target.py."""
