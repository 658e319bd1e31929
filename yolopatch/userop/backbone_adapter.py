"""A backbone's adapter class: what the yaml row names, `inject` writes and `check` builds.

parse_model's backbone branch (yolopatch's, or a target's own `TorchVision`/`Index` one)
sets the row's channels to its first argument, unscaled, and calls the class with the rest: the user's
options. The class carries its outputs (`yolopatch_backbone`: widths and strides, in forward's order), the
mark the branch recognises. A class is subclassed (its state_dict keys stay its own); a factory function or
`timm:NAME` is wrapped (`self.m`).
"""

from __future__ import annotations

from yolopatch.userop.record import UserOp


def backbone_adapter_source(op: UserOp, base: str) -> str:
    spec = op.backbone
    assert spec is not None
    options = op.options
    head = [f"{name}={value!r}" for name, value in options]
    passed = [f"{name}={name}" for name, _ in options]
    passed += [f"{name}={value!r}" for name, value in op.values.items() if name not in dict(options)]
    outputs = tuple(zip(spec.widths, spec.strides, strict=True))
    doc = (
        f'    """{op.cls} as a yaml backbone row: [-1, 1, {op.name}, [C, {", ".join(n for n, _ in options)}]] '
        f'(C: its last output\'s channels); outputs (channels, stride) {list(outputs)}. Written by yolopatch."""'
    )
    lines = [f"class {op.name}({'nn.Module' if spec.factory else base}):", doc, ""]
    lines += [f"    yolopatch_backbone = {outputs!r}", ""]
    lines += [f"    def __init__(self{''.join(', ' + h for h in head)}):"]
    if spec.factory == "timm":
        lines += [
            "        super().__init__()",
            "        import timm",
            "",
            f"        self.m = timm.create_model({op.cls!r}, features_only=True, {', '.join(passed)})",
        ]
    elif spec.factory:
        lines += ["        super().__init__()", f"        self.m = {base}({', '.join(passed)})"]
    else:
        lines += [f"        super().__init__({', '.join(passed)})"]
    if spec.factory:
        lines += ["", "    def forward(self, x):", "        return self.m(x)"]
    return "\n".join([*lines, ""])
