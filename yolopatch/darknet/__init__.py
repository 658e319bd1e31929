"""The darknet `.cfg` model format: reading, listing and editing the files YOLOv3 and YOLOv4 are written in."""
