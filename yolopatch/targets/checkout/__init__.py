"""The checkout layout YOLOv5 made and WongKinYiu's YOLOv7 and YOLOv9 kept: models/common.py holds the
blocks, models/yolo.py holds parse_model, which `eval`s module names in yolo.py's globals (a star import of
common). Shared by the targets of those families; each gives its `Layout` and its tables.

inject edits two files: common.py gets the operator blocks; yolo.py gets the names in parse_model's
(c1, c2) collection, its "insert n" collection for blocks that take the row's n, and an explicit
`from models.common import ...` when yolo.py has one. The pip packages of these families (`yolov5`,
`yolo9`, `yolov7detect`) have the same files under PACKAGE/models/ with absolute imports.

`layout.py`: finding a checkout; `sites.py`: the places inject edits; `edits.py`: planning inject and
revert; `target.py`: the Target of these families; `child.py`: the child of `check --repo`.
"""
