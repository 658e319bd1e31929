"""`inject`: put Involution into a YOLOv5 checkout's models/common.py and register it in models/yolo.py.

Edit points are found with `ast` positions, never with regular expressions over source. Each edit is an
insertion whose exact inverse `--revert` applies, and the marker block in common.py records which
insertions yolopatch made, so a revert removes those and nothing else.
"""

from __future__ import annotations

import ast
import hashlib
import re
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from yolopatch import __version__
from yolopatch.errors import YolopatchError
from yolopatch.files import read_text
from yolopatch.template import template_source

NAME = "Involution"
_BEGIN = re.compile(
    r"# >>> yolopatch (?P<version>\S+): Involution; yolo\.py: (?P<added>[a-z, ]*?)(?:; (?P<forced>forced))?"
    r"(?:; sha256 (?P<digest>[0-9a-f]{12}))?\. "
)
_END = "# <<< yolopatch"
_DISABLED = "# yolopatch --force disabled: "
_LEAD_LINES = 2  # the block starts after two blank lines


@dataclass(frozen=True)
class Checkout:
    models: Path
    common: Path
    yolo: Path


@dataclass(frozen=True)
class Flavour:
    layout: str
    imports: str
    collection: str

    def describe(self) -> str:
        return f"{self.layout}; yolo.py imports common with {self.imports}; parse_model's collection is {self.collection}"


@dataclass(frozen=True)
class InjectResult:
    """New texts for the files that change (path -> text), the old texts, and what was done."""

    checkout: Checkout
    flavour: Flavour
    old: dict[Path, str]
    new: dict[Path, str]
    actions: tuple[str, ...]
    warnings: tuple[str, ...] = ()

    @property
    def changed(self) -> bool:
        return any(self.old[path] != text for path, text in self.new.items())


def find_checkout(repo: Path) -> Checkout:
    """The models/ folder of a YOLOv5 checkout, given its root, its models/ folder or an unpacked wheel."""
    for models in (repo / "models", repo, repo / "yolov5" / "models"):
        if (models / "yolo.py").is_file() and (models / "common.py").is_file():
            return Checkout(models, models / "common.py", models / "yolo.py")
    if not repo.exists():
        raise YolopatchError(f"{repo}: no such folder.")
    raise YolopatchError(
        f"{repo}: not a YOLOv5 checkout: found no models/yolo.py and models/common.py. "
        "Pass the checkout's root folder (or its models/ folder)."
    )


def enclosing_checkout(path: Path) -> Path | None:
    """The YOLOv5 checkout a file sits in (as a path relative to the working folder when it is below it)."""
    for folder in path.resolve().parents:
        if (folder / "models" / "yolo.py").is_file() and (folder / "models" / "common.py").is_file():
            try:
                return folder.relative_to(Path.cwd())
            except ValueError:
                return folder
    return None


@dataclass(frozen=True)
class _State:
    """A checkout's two files as read, with the places inject edits."""

    checkout: Checkout
    common_text: str
    yolo_text: str
    common_tree: ast.Module
    collection: ast.List | ast.Tuple | ast.Set
    explicit: ast.ImportFrom | None
    flavour: Flavour


def _read(repo: Path) -> _State:
    checkout = find_checkout(repo)
    common_text, yolo_text = read_text(checkout.common), read_text(checkout.yolo)
    common_tree, yolo_tree = _parse(common_text, checkout.common), _parse(yolo_text, checkout.yolo)
    collection = _collection(yolo_tree, checkout)
    explicit = _explicit_import(yolo_tree, checkout)
    flavour = _flavour(yolo_tree, explicit, collection)
    return _State(checkout, common_text, yolo_text, common_tree, collection, explicit, flavour)


def plan_inject(repo: Path, force: bool = False) -> InjectResult:
    state = _read(repo)
    checkout, common_text, yolo_text = state.checkout, state.common_text, state.yolo_text
    common_tree, collection, explicit, flavour = (
        state.common_tree,
        state.collection,
        state.explicit,
        state.flavour,
    )
    block = _find_block(common_text)
    actions: list[str] = []
    if block is not None and not force and _edited(common_text, block, common_tree, checkout):
        raise YolopatchError(
            f"{checkout.common}:{_line_of(common_text, block)}: {_edited_reason(block)}; injecting again would "
            f"lose those edits, so nothing was changed. To replace it with yolopatch {__version__}'s, run "
            "again with --force."
        )

    added = set(block.added) if block else set()
    insertions = []
    if explicit is not None and NAME not in [a.name for a in explicit.names]:
        insertions.append(_insertion(yolo_text, explicit.names))
        added.add("import")
        actions.append(f"{checkout.yolo.name}: added {NAME} to `from ...models.common import ...`")
    if NAME not in _names(collection.elts):
        insertions.append(_insertion(yolo_text, collection.elts))
        added.add("collection")
        actions.append(f"{checkout.yolo.name}: added {NAME} to parse_model's (c1, c2) {flavour.collection}")
    new_yolo = yolo_text
    for at, insertion in sorted(insertions, reverse=True):  # later offsets first keep earlier ones valid
        new_yolo = new_yolo[:at] + insertion + new_yolo[at:]

    foreign = [
        n
        for n in common_tree.body
        if isinstance(n, ast.ClassDef) and n.name == NAME and not _inside(common_text, block, n)
    ]
    if foreign and not force:
        line = foreign[0].lineno
        raise YolopatchError(
            f"{checkout.common}:{line}: already defines its own `class {NAME}` (pasted from a blog post?). "
            "Remove it, or run again with --force to disable it and use yolopatch's (--revert restores it)."
        )
    new_common = _disable(common_text, foreign) if foreign else common_text
    if foreign:
        actions.append(
            f"{checkout.common.name}: disabled the existing class {NAME} at line {foreign[0].lineno}"
        )
    forced = bool(foreign) or (block is not None and block.forced)
    wanted = _block_text(common_tree, common_text, block, checkout, sorted(added), forced)
    if block is None:
        new_common = new_common + wanted
        actions.append(f"{checkout.common.name}: appended class {NAME} (yolopatch {__version__})")
    elif new_common[block.start : block.end] != wanted:
        new_common = new_common[: block.start] + wanted + new_common[block.end :]
        actions.append(
            f"{checkout.common.name}: updated class {NAME} from yolopatch {block.version} to {__version__}"
        )
    new = {checkout.common: new_common, checkout.yolo: new_yolo}
    _verify({checkout.common: new_common, checkout.yolo: new_yolo})
    return InjectResult(
        checkout, flavour, {checkout.common: common_text, checkout.yolo: yolo_text}, new, tuple(actions)
    )


def plan_revert(repo: Path, force: bool = False) -> InjectResult:
    state = _read(repo)
    checkout, common_text, yolo_text = state.checkout, state.common_text, state.yolo_text
    collection, explicit, flavour = state.collection, state.explicit, state.flavour
    block = _find_block(common_text)
    old = {checkout.common: common_text, checkout.yolo: yolo_text}
    if block is None:
        return InjectResult(checkout, flavour, old, dict(old), ())
    if not force and _changed_since_written(block):
        raise YolopatchError(
            f"{checkout.common}:{_line_of(common_text, block)}: yolopatch's block (class {NAME}) was edited "
            "since yolopatch wrote it; reverting would delete those edits, so nothing was changed. Copy out "
            "what you want to keep, then run again with --force."
        )
    actions = [f"{checkout.common.name}: removed class {NAME} (yolopatch {block.version})"]
    new_common = common_text[: block.start] + common_text[block.end :]
    if block.forced:
        new_common = new_common.replace(_DISABLED, "")
        actions.append(f"{checkout.common.name}: restored the class {NAME} that --force had disabled")
    # Remove the later edit first so the earlier one's offsets stay valid.
    edits = []
    if "collection" in block.added and NAME in _names(collection.elts):
        edits.append(_removal(yolo_text, collection.elts))
        actions.append(f"{checkout.yolo.name}: removed {NAME} from parse_model's collection")
    if "import" in block.added and explicit is not None and NAME in [a.name for a in explicit.names]:
        edits.append(_removal(yolo_text, explicit.names))
        actions.append(f"{checkout.yolo.name}: removed {NAME} from the explicit import")
    new_yolo = yolo_text
    for start, end in sorted(edits, reverse=True):
        new_yolo = new_yolo[:start] + new_yolo[end:]
    new = {checkout.common: new_common, checkout.yolo: new_yolo}
    _verify(new)
    return InjectResult(checkout, flavour, old, new, tuple(actions), _checkpoint_warnings(checkout))


def manual_edit() -> str:
    return (
        f"By hand: 1) append templates/involution.py from yolopatch to models/common.py; "
        f"2) in models/yolo.py parse_model, add {NAME} to the `if m in {{Conv, GhostConv, ...}}:` collection; "
        f"3) if yolo.py imports names from models.common explicitly, add {NAME} there too."
    )


# --- locating edit points -------------------------------------------------------------------------


@dataclass(frozen=True)
class _Block:
    start: int
    end: int
    version: str
    added: tuple[str, ...]
    forced: bool
    digest: str | None  # None: written by yolopatch 0.1.0, which recorded none
    body: str  # the lines between the marker lines, newlines as "\n"


def _parse(text: str, path: Path) -> ast.Module:
    try:
        return ast.parse(text.lstrip("\ufeff"), str(path))
    except SyntaxError as exc:
        raise YolopatchError(
            f"{path}:{exc.lineno}: does not parse as Python ({exc.msg}); fix it first."
        ) from None


def _collection(tree: ast.Module, checkout: Checkout) -> ast.List | ast.Tuple | ast.Set:
    """The `if m in <collection>:` of parse_model that gives modules (c1, c2) handling: the one with Conv."""
    parse_model = next(
        (n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef) and n.name == "parse_model"), None
    )
    if parse_model is None:
        raise YolopatchError(f"{checkout.yolo}: has no parse_model function; is this YOLOv5? {manual_edit()}")
    for node in ast.walk(parse_model):
        if (
            isinstance(node, ast.Compare)
            and isinstance(node.left, ast.Name)
            and node.left.id == "m"
            and len(node.ops) == 1
            and isinstance(node.ops[0], ast.In)
            and isinstance(node.comparators[0], (ast.List, ast.Tuple, ast.Set))
            and "Conv" in _names(node.comparators[0].elts)
        ):
            return node.comparators[0]
    raise YolopatchError(
        f"{checkout.yolo}: parse_model has no `if m in {{Conv, ...}}:` collection (an unknown fork?); "
        f"nothing was changed. {manual_edit()}"
    )


def _explicit_import(tree: ast.Module, checkout: Checkout) -> ast.ImportFrom | None:
    """yolo.py's `from models.common import A, B` (None when it star-imports common)."""
    imports = [
        n for n in tree.body if isinstance(n, ast.ImportFrom) and (n.module or "").endswith("models.common")
    ]
    if any(a.name == "*" for n in imports for a in n.names):
        return None
    if not imports:
        raise YolopatchError(
            f"{checkout.yolo}: does not import models.common at the top level; nothing was changed. {manual_edit()}"
        )
    return imports[0]


def _flavour(tree: ast.Module, explicit: ast.ImportFrom | None, collection: ast.expr) -> Flavour:
    absolute = any(
        isinstance(n, ast.ImportFrom) and (n.module or "").startswith("yolov5.models") for n in tree.body
    )
    layout = "yolov5 pip package layout (absolute imports)" if absolute else "checkout layout (models.common)"
    if explicit is None:
        imports = "a star import"
    elif explicit.lineno == explicit.end_lineno:
        imports = "an explicit one-line import"
    else:
        imports = "an explicit parenthesised import"
    kind = {ast.List: "list", ast.Tuple: "tuple", ast.Set: "set"}[type(collection)]
    if _one_per_line(collection.elts):
        kind += " (one name per line)"
    return Flavour(layout, imports, kind)


def _names(elts: list) -> list[str]:
    return [e.id if isinstance(e, ast.Name) else getattr(e, "name", ast.unparse(e)) for e in elts]


def _one_per_line(elts: list) -> bool:
    lines = [e.lineno for e in elts]
    return len(elts) > 1 and len(set(lines)) == len(lines)


def _offset(text: str, lineno: int, col: int) -> int:
    """ast's (line, UTF-8 byte column) as an index into text."""
    starts = [0] + [m.end() for m in re.finditer("\n", text)]
    line_start = starts[lineno - 1]
    bom = 1 if text.startswith("\ufeff") and lineno == 1 else 0
    line = text[line_start + bom :]
    return line_start + bom + len(line.encode("utf-8")[:col].decode("utf-8"))


def _insertion(text: str, elts: list) -> tuple[int, str]:
    """Where and what to insert to add Involution after the last name, in the collection's own style."""
    last = elts[-1]
    at = _offset(text, last.end_lineno, last.end_col_offset)
    if not _one_per_line(elts):
        return at, f", {NAME}"
    line_start = text.rfind("\n", 0, at) + 1
    line = text[line_start:at]
    indent = line[: len(line) - len(line.lstrip(" \t"))]
    return at, f",{_newline(text)}{indent}{NAME}"


def _removal(text: str, elts: list) -> tuple[int, int]:
    """The span `insert_after_last` added: from the end of the name before Involution to Involution's end."""
    index = _names(elts).index(NAME)
    target, before = elts[index], elts[index - 1]
    return _offset(text, before.end_lineno, before.end_col_offset), _offset(
        text, target.end_lineno, target.end_col_offset
    )


def _newline(text: str) -> str:
    return "\r\n" if "\r\n" in text else "\n"


def _find_block(text: str) -> _Block | None:
    match = _BEGIN.search(text)
    if not match:
        return None
    end = text.find(_END, match.end())
    if end < 0:
        raise YolopatchError(
            f"yolopatch's block in common.py has no end marker `{_END}`; restore the file from git."
        )
    end = text.find("\n", end)
    end = len(text) if end < 0 else end + 1
    lead = _newline(text) * _LEAD_LINES
    start = match.start() - len(lead) if text[: match.start()].endswith(lead) else match.start()
    added = tuple(a.strip() for a in match.group("added").split(",") if a.strip())
    body_start = text.find("\n", match.end()) + 1
    body = text[body_start : text.rfind("\n", 0, end - 1) + 1].replace("\r\n", "\n")
    return _Block(
        start, end, match.group("version"), added, bool(match.group("forced")), match.group("digest"), body
    )


def block_digest(body: str) -> str:
    """The checksum the marker carries: the first 12 hex digits of the body's SHA-256, newlines as "\n"."""
    return hashlib.sha256(body.replace("\r\n", "\n").encode("utf-8")).hexdigest()[:12]


def _changed_since_written(block: _Block) -> bool:
    """True when the body no longer matches the checksum yolopatch wrote (0.1.0 wrote none: unknown, False)."""
    return block.digest is not None and block_digest(block.body) != block.digest


def _edited(text: str, block: _Block, tree: ast.Module, checkout: Checkout) -> bool:
    """Whether injecting again could lose a user's edits: the body no longer matches its checksum, or a
    0.1.0 block (no checksum) differs from what this version writes, so nobody can tell."""
    if block.digest is not None:
        return _changed_since_written(block)
    return block.body != _block_body(_bound_names(tree, text, block, checkout))


def _edited_reason(block: _Block) -> str:
    if block.digest is None:
        return (
            f"yolopatch's block (class {NAME}) was written by yolopatch {block.version}, which recorded no "
            "checksum, and it differs from this version's, so yolopatch cannot tell whether you edited it"
        )
    return f"yolopatch's block (class {NAME}) was edited since yolopatch {block.version} wrote it"


def _line_of(text: str, block: _Block) -> int:
    return text.count("\n", 0, text.index(">>> yolopatch", block.start)) + 1


def _inside(text: str, block: _Block | None, node: ast.stmt) -> bool:
    return block is not None and block.start <= _offset(text, node.lineno, node.col_offset) < block.end


def _block_text(
    tree: ast.Module, text: str, block: _Block | None, checkout: Checkout, added: list[str], forced: bool
) -> str:
    body = _block_body(_bound_names(tree, text, block, checkout))
    header = (
        f"# >>> yolopatch {__version__}: Involution; yolo.py: {', '.join(added)}{'; forced' if forced else ''}"
        f"; sha256 {block_digest(body)}. Remove with `yolopatch inject --revert`."
    )
    newline = _newline(text)
    return newline * _LEAD_LINES + newline.join([header, *body.split("\n")[:-1], _END]) + newline


def _bound_names(tree: ast.Module, text: str, block: _Block | None, checkout: Checkout) -> set[str]:
    """The names common.py defines outside yolopatch's block; it must define Conv."""
    bound = _module_names([node for node in tree.body if not _inside(text, block, node)])
    if "Conv" not in bound:
        raise YolopatchError(
            f"{checkout.common}: defines no Conv, which Involution builds on; is this YOLOv5? {manual_edit()}"
        )
    return bound


def _block_body(bound: set[str]) -> str:
    """The lines between the marker lines: the imports common.py lacks, then the template."""
    imports = [
        line
        for name, line in (("torch", "import torch"), ("nn", "import torch.nn as nn"))
        if name not in bound
    ]
    return "\n".join([*imports, "", "", *template_source().rstrip("\n").split("\n")]) + "\n"


def _module_names(body: list[ast.stmt]) -> set[str]:
    names = set()
    for node in body:
        if isinstance(node, (ast.ClassDef, ast.FunctionDef)):
            names.add(node.name)
        elif isinstance(node, ast.Import):
            names.update(a.asname or a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            names.update(a.asname or a.name for a in node.names)
    return names


def _disable(text: str, classes: list[ast.ClassDef]) -> str:
    lines = text.splitlines(keepends=True)
    for node in classes:
        first = min([node.lineno] + [d.lineno for d in node.decorator_list])
        for i in range(first - 1, node.end_lineno):
            lines[i] = _DISABLED + lines[i]
    return "".join(lines)


def _checkpoint_warnings(checkout: Checkout) -> tuple[str, ...]:
    """Checkpoints in the checkout that pickle the class by name: they stop loading once it is removed."""
    found = [path for path in _checkpoints(checkout.models.parent) if _pickles_class(path, NAME)]
    if not found:
        return ()
    shown = ", ".join(str(p) for p in found[:3]) + (f" and {len(found) - 3} more" if len(found) > 3 else "")
    return (
        f"{len(found)} checkpoint(s) in this checkout hold {NAME} layers ({shown}); YOLOv5 pickles the class "
        f"by name, so they load only while {NAME} is injected. Run `yolopatch inject` again to load them.",
    )


def _checkpoints(root: Path) -> Iterator[Path]:
    for path in root.rglob("*.pt"):
        if not any(
            part.startswith(".") or part in ("site-packages", "node_modules")
            for part in path.parts[len(root.parts) :]
        ):
            yield path


def _pickles_class(path: Path, name: str) -> bool:
    """torch.save writes a zip whose data.pkl names every class it pickles."""
    try:
        with zipfile.ZipFile(path) as archive:
            return any(
                entry.endswith("data.pkl") and name.encode() in archive.read(entry)
                for entry in archive.namelist()
            )
    except (OSError, zipfile.BadZipFile):
        return False


def _verify(texts: dict[Path, str]) -> None:
    for path, text in texts.items():
        try:
            compile(text.lstrip("\ufeff"), str(path), "exec")
        except SyntaxError as exc:
            raise YolopatchError(
                f"{path}:{exc.lineno}: internal error: the edited file would not compile; nothing was written. "
                "Please report this."
            ) from None
