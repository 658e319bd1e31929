#!/usr/bin/env bash
# One-command setup: a .venv with yolopatch (editable), its test and docs tools, and what the real-YOLOv5 tests
# import.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
py=.venv/bin/python
$py -m pip install -q --upgrade pip
# CPU build, pinned: an unpinned torch would pull a multi-GB CUDA build.
$py -m pip install -q torch==2.13.0
$py -m pip install -q -e ".[test,docs]"  # docs: mkdocs-material, for `mkdocs build --strict` in .ci/run
# YOLOv5's own runtime imports, for tests that build models with YOLOv5's code. ultralytics and the
# yolov5 code itself declare torch/torchvision requirements, so they come in with --no-deps.
$py -m pip install -q -r tests/requirements-yolov5.txt
$py -m pip install -q --no-deps ultralytics==8.0.232
echo "setup done: activate with  . .venv/bin/activate"
