"""The places in a checkout that inject edits: parse_model's collections and the explicit import of
common in yolo.py, the blocks in common.py, the users' modules copied into models/; or, where one is
missing, the reason with the steps to do by hand."""

from __future__ import annotations

import ast
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from yolopatch.errors import YolopatchError
from yolopatch.inject import Block, find_blocks, one_per_line, parse_python
from yolopatch.targets.checkout.layout import Checkout, imports_as_package
from yolopatch.targets.collections import parse_model_of, repeat_collection, required_channel_collection


def manual_edit(names: Sequence[str]) -> str:
    listed = ", ".join(names)
    return (
        f"By hand: 1) append the class(es) from `yolopatch ops` templates to models/common.py; "
        f"2) in models/yolo.py parse_model, add {listed} to the `if m in {{Conv, GhostConv, ...}}:` collection; "
        f"3) if yolo.py imports names from models.common explicitly, add {listed} there too."
    )


@dataclass(frozen=True)
class Sites:
    """A checkout's two files as read, with the places inject edits."""

    checkout: Checkout
    common: str
    yolo: str
    common_tree: ast.Module
    collection: ast.List | ast.Tuple | ast.Set
    repeat: ast.List | ast.Tuple | ast.Set | None  # parse_model's "insert n" collection (C3's)
    explicit: ast.ImportFrom | None
    blocks: dict[str, Block]
    absolute: bool
    copies: Mapping[Path, str]  # users' modules copied into models/
    heads: dict[str, Block]  # users' detection heads, pasted into yolo.py (yolopatch.targets.checkout.heads)

    def flavour(self) -> str:
        layout = (
            f"{self.checkout.layout.package} pip package layout (absolute imports)"
            if self.absolute
            else "checkout layout (models.common)"
        )
        if self.explicit is None:
            imports = "a star import"
        elif self.explicit.lineno == self.explicit.end_lineno:
            imports = "an explicit one-line import"
        else:
            imports = "an explicit parenthesised import"
        return (
            f"{layout}: operators are registered in parse_model (models/yolo.py:{self.collection.lineno}); "
            f"yolo.py imports common with {imports}; parse_model's collection is {self.kind()}"
        )

    def kind(self) -> str:
        kind = {ast.List: "list", ast.Tuple: "tuple", ast.Set: "set"}[type(self.collection)]
        return kind + (" (one name per line)" if one_per_line(self.collection.elts) else "")


def find_sites(checkout: Checkout, texts: Mapping[Path, str], names: Sequence[str]) -> Sites:
    """The places inject edits; `names`: the operators asked for, for the manual steps of an error."""
    common, yolo = texts[checkout.common], texts[checkout.yolo]
    common_tree, yolo_tree = parse_python(common, checkout.common), parse_python(yolo, checkout.yolo)
    return Sites(
        checkout,
        common,
        yolo,
        common_tree,
        required_channel_collection(
            parse_model_of(yolo_tree), checkout.yolo, checkout.layout.family, "fork", manual_edit(names)
        )[0],
        repeat_collection(parse_model_of(yolo_tree)),
        _explicit_import(yolo_tree, checkout, names),
        find_blocks(common, checkout.common),
        imports_as_package(yolo_tree, checkout.models),
        {path: text for path, text in texts.items() if path.name.startswith("yolopatch_")},
        find_blocks(yolo, checkout.yolo),
    )


def _explicit_import(tree: ast.Module, checkout: Checkout, names: Sequence[str]) -> ast.ImportFrom | None:
    """yolo.py's `from models.common import A, B` (None when it star-imports common)."""
    imports = [
        n for n in tree.body if isinstance(n, ast.ImportFrom) and (n.module or "").endswith("models.common")
    ]
    if any(a.name == "*" for n in imports for a in n.names):
        return None
    if not imports:
        raise YolopatchError(
            f"{checkout.yolo}: does not import models.common at the top level; nothing was changed. "
            f"{manual_edit(names)}"
        )
    return imports[0]
