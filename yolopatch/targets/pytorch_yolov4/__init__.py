"""WongKinYiu's PyTorch_YOLOv4 (and the ultralytics/yolov3 archive layout it grew from): a checkout that builds
darknet `.cfg` models with models/models.py (or a root models.py), utils/layers.py and utils/parse_config.py."""
