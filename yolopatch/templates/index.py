"""Index: one feature map from the list a backbone row returns.

The same name and semantics as ultralytics' own `Index` (8.3.66 and later): a yaml row
`[BACKBONE_ROW, 1, Index, [C, K]]` gives map K of the backbone's list, with C its channels (not scaled by
width: the backbone's own). yolopatch writes it where the target has no `Index` of its own (YOLOv5, YOLOv7,
YOLOv9, ultralytics before 8.3.59); parse_model's backbone branch gives it `args[1:]`.
"""

from torch import nn


class Index(nn.Module):
    """Returns map `index` of the list its input row gives (a backbone's outputs)."""

    yolopatch_backbone = "index"  # parse_model's backbone branch: c2 = args[0], the constructor gets args[1:]

    def __init__(self, index=0):
        super().__init__()
        self.index = index

    def forward(self, x):
        return x[self.index]
