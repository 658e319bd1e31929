"""Child-process entry points (run as `python -m`, see yolopatch.child): outside the layers, they may import
anything, and nothing imports them."""
