"""`inject`'s core: marked operator blocks, names added to Python collections, and plans of file changes.

Pure: texts in, a plan out; the targets (yolopatch.targets) say which files and which places, and the CLI
reads and writes. Edit points come from `ast` positions, never from regular expressions over source. Each
edit is an insertion whose exact inverse `--revert` applies; each operator's block records which insertions
yolopatch made and a checksum of its body, so a revert removes those and nothing else, and a block the user
edited is never overwritten or removed without --force.
"""

from __future__ import annotations

import ast
import hashlib
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from yolopatch import __version__
from yolopatch.errors import YolopatchError
from yolopatch.files import FileChange
from yolopatch.paste import Paste
from yolopatch.splice import Edit, newline_of, splice

_BEGIN = re.compile(
    r"# >>> yolopatch (?P<version>\S+): (?P<name>\w+); (?P<file>[\w.]+): (?P<added>[a-z, ]*?)"
    r"(?:; (?P<forced>forced))?(?:; sha256 (?P<digest>[0-9a-f]{12}))?\. "
)
_END = "# <<< yolopatch"
DISABLED = "# yolopatch --force disabled: "
_LEAD_LINES = 2  # a block starts after two blank lines


@dataclass(frozen=True)
class InjectPlan:
    """What inject (or revert) would do: the file changes, a line per action, warnings, the target's flavour."""

    flavour: str
    changes: tuple[FileChange, ...]
    actions: tuple[str, ...]
    warnings: tuple[str, ...] = ()
    # a revert: the checkpoints in view that pickle the classes it removes, and those classes
    checkpoints: tuple[Path, ...] = ()
    needed: tuple[str, ...] = ()

    @property
    def changed(self) -> bool:
        return any(change.changed for change in self.changes)


@dataclass(frozen=True)
class Block:
    """An operator block yolopatch wrote, as found in a file."""

    name: str
    start: int
    end: int
    line: int
    version: str
    added: tuple[str, ...]
    forced: bool
    digest: str | None  # None: written by yolopatch 0.1.0, which recorded none
    body: str  # the lines between the marker lines, newlines as "\n"


def find_blocks(text: str, path: Path) -> dict[str, Block]:
    """Every yolopatch block in a file, by operator name."""
    blocks = {}
    for match in _BEGIN.finditer(text):
        end = text.find(_END, match.end())
        if end < 0:
            raise YolopatchError(
                f"{path}: yolopatch's {match.group('name')} block has no end marker `{_END}`; "
                "restore the file from git."
            )
        body_start = text.find("\n", match.end()) + 1
        body = text[body_start:end].replace("\r\n", "\n")
        end = text.find("\n", end)
        end = len(text) if end < 0 else end + 1
        lead = newline_of(text) * _LEAD_LINES
        start = match.start() - len(lead) if text[: match.start()].endswith(lead) else match.start()
        added = tuple(a.strip() for a in match.group("added").split(",") if a.strip())
        blocks[match.group("name")] = Block(
            match.group("name"),
            start,
            end,
            text.count("\n", 0, match.start()) + 1,
            match.group("version"),
            added,
            bool(match.group("forced")),
            match.group("digest"),
            body,
        )
    return blocks


def block_digest(body: str) -> str:
    """The checksum a marker carries: the first 12 hex digits of the body's SHA-256, newlines as "\n"."""
    return hashlib.sha256(body.replace("\r\n", "\n").encode("utf-8")).hexdigest()[:12]


def block_body(paste: Paste, bound: set[str], provided: Sequence[str] = ()) -> str:
    """The lines between the marker lines: the template's imports the file lacks, the imports that provide
    what it takes from yolopatch (`provided`, when the target file does not define it), then the template."""
    imports = [line for names, line in paste.imports if not names <= bound]
    return "\n".join([*imports, *provided, "", "", *paste.body.rstrip("\n").split("\n")]) + "\n"


def compose_block(
    name: str, registry: str, body: str, added: Sequence[str], forced: bool, newline: str
) -> str:
    """A whole block: two blank lines, the marker, the body, the end marker (in the file's newlines)."""
    header = (
        f"# >>> yolopatch {__version__}: {name}; {registry}: {', '.join(added)}{'; forced' if forced else ''}"
        f"; sha256 {block_digest(body)}. Remove with `yolopatch inject --revert`."
    )
    lines = [header, *body.split("\n")[:-1], _END]
    return newline * _LEAD_LINES + newline.join(lines) + newline


def edited_reason(block: Block, wanted_body: str) -> str | None:
    """Why injecting again could lose a user's edits (None: it cannot).

    A block whose body no longer matches its checksum was edited. A 0.1.0 block (no checksum) that differs
    from what this version writes cannot be told apart from an edited one, so it counts as edited too.
    """
    if block.digest is not None:
        if block_digest(block.body) == block.digest:
            return None
        return f"yolopatch's block (class {block.name}) was edited since yolopatch {block.version} wrote it"
    if block.body == wanted_body:
        return None
    return (
        f"yolopatch's block (class {block.name}) was written by yolopatch {block.version}, which recorded no "
        "checksum, and it differs from this version's, so yolopatch cannot tell whether you edited it"
    )


def refuse_edited(block: Block | None, wanted_body: str, path: Path) -> None:
    """Stop before an inject would overwrite the user's edits to a block (--force skips this)."""
    reason = None if block is None else edited_reason(block, wanted_body)
    if reason:
        raise YolopatchError(
            f"{path}:{block.line}: {reason}; injecting again would lose those edits, so nothing "  # type: ignore[union-attr]
            f"was changed. To replace it with this version's, run again with --force."
        )


def refuse_revert_edited(block: Block, path: Path) -> None:
    if changed_since_written(block):
        raise YolopatchError(
            f"{path}:{block.line}: yolopatch's block (class {block.name}) was edited since yolopatch wrote it; "
            "reverting would delete those edits, so nothing was changed. Copy out what you want to keep, then "
            "run again with --force."
        )


def changed_since_written(block: Block) -> bool:
    return block.digest is not None and block_digest(block.body) != block.digest


def bound_names(body: Iterable[ast.stmt]) -> set[str]:
    """Names that top-level statements bind: classes, functions, imports."""
    names = set()
    for node in body:
        if isinstance(node, (ast.ClassDef, ast.FunctionDef)):
            names.add(node.name)
        elif isinstance(node, ast.Import):
            names.update(a.asname or a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            names.update(a.asname or a.name for a in node.names)
    return names


def inside(text: str, blocks: Iterable[Block], node: ast.stmt) -> bool:
    at = offset(text, node.lineno, node.col_offset)
    return any(block.start <= at < block.end for block in blocks)


def parse_python(text: str, path: Path) -> ast.Module:
    try:
        return ast.parse(text.lstrip("\ufeff"), str(path))
    except SyntaxError as exc:
        raise YolopatchError(
            f"{path}:{exc.lineno}: does not parse as Python ({exc.msg}); fix it first."
        ) from None


def names_of(elts: Sequence[ast.AST]) -> list[str]:
    """The names in a collection, an import's list (aliases) or `__all__` (strings)."""
    return [_name_of(e) for e in elts]


def _name_of(e: ast.AST) -> str:
    if isinstance(e, ast.Name):
        return e.id
    if isinstance(e, ast.Constant) and isinstance(e.value, str):
        return e.value
    return getattr(e, "name", None) or ast.unparse(e)


def one_per_line(elts: Sequence[ast.AST]) -> bool:
    lines = [e.lineno for e in elts]  # type: ignore[attr-defined]
    return len(elts) > 1 and len(set(lines)) == len(lines)


def offset(text: str, lineno: int, col: int) -> int:
    """ast's (line, UTF-8 byte column) as an index into text."""
    starts = [0] + [m.end() for m in re.finditer("\n", text)]
    line_start = starts[lineno - 1]
    bom = 1 if text.startswith("\ufeff") and lineno == 1 else 0
    line = text[line_start + bom :]
    return line_start + bom + len(line.encode("utf-8")[:col].decode("utf-8"))


def names_insertion(text: str, elts: Sequence[ast.AST], names: Sequence[str]) -> Edit:
    """Add names after the last element, in the collection's own style (one line, or one name per line)."""
    last = elts[-1]
    at = offset(text, last.end_lineno, last.end_col_offset)  # type: ignore[attr-defined]
    if not one_per_line(elts):
        return Edit(at, at, "".join(f", {name}" for name in names))
    line_start = text.rfind("\n", 0, at) + 1
    line = text[line_start:at]
    indent = line[: len(line) - len(line.lstrip(" \t"))]
    return Edit(at, at, "".join(f",{newline_of(text)}{indent}{name}" for name in names))


def names_removal(text: str, elts: Sequence[ast.AST], names: Iterable[str]) -> list[Edit]:
    """The inverse of names_insertion: each run of removed names goes from the end of the element before it
    to the run's end (a run at the start of the list: from its start to the next element's start). Some
    element must stay."""
    listed = names_of(elts)
    gone = [i for i, name in enumerate(listed) if name in set(names)]
    runs: list[list[int]] = []
    for i in gone:
        if runs and runs[-1][-1] == i - 1:
            runs[-1].append(i)
        else:
            runs.append([i])
    return [_run_removal(text, elts, run[0], run[-1]) for run in runs]


def _run_removal(text: str, elts: Sequence[ast.AST], first: int, last: int) -> Edit:
    def start(e: ast.AST) -> int:
        return offset(text, e.lineno, e.col_offset)  # type: ignore[attr-defined]

    def end(e: ast.AST) -> int:
        return offset(text, e.end_lineno, e.end_col_offset)  # type: ignore[attr-defined]

    if first == 0:
        return Edit(start(elts[0]), start(elts[last + 1]), "")
    return Edit(end(elts[first - 1]), end(elts[last]), "")


def line_end(text: str, lineno: int) -> int:
    """The offset of the line break that ends line `lineno` (the text's length on its last line)."""
    at = 0
    for _ in range(lineno):
        found = text.find("\n", at)
        if found < 0:
            return len(text)
        at = found + 1
    return at - 1 - (1 if text[at - 2 : at] == "\r\n" else 0)


def statement_insertion(text: str, after: ast.stmt, statement: str) -> Edit:
    """A one-line statement on a line of its own, right after the line where `after` ends."""
    at = line_end(text, after.end_lineno or after.lineno)
    return Edit(at, at, newline_of(text) + statement)


def statement_removal(text: str, body: Sequence[ast.stmt], node: ast.stmt) -> Edit:
    """The inverse of statement_insertion: from the end of the statement before it to its own line's end."""
    before = body[body.index(node) - 1]
    return Edit(
        line_end(text, before.end_lineno or before.lineno), line_end(text, node.end_lineno or node.lineno), ""
    )


def disable_classes(text: str, classes: Sequence[ast.ClassDef]) -> list[Edit]:
    """Comment out foreign classes of the same name (--force), one prefix per line."""
    starts = [0] + [m.end() for m in re.finditer("\n", text)]
    edits = []
    for node in classes:
        first = min([node.lineno] + [d.lineno for d in node.decorator_list])
        edits += [Edit(starts[i], starts[i], DISABLED) for i in range(first - 1, node.end_lineno or first)]
    return edits


def restore_classes(text: str, names: Iterable[str]) -> list[Edit]:
    """Undo disable_classes for the runs of disabled lines that define one of `names`."""
    wanted = set(names)
    edits: list[Edit] = []
    run: list[tuple[int, str]] = []
    position = 0
    for line in [*text.splitlines(keepends=True), ""]:
        if line.startswith(DISABLED):
            run.append((position, line[len(DISABLED) :]))
        elif run:
            if _defined_classes("".join(code for _, code in run)) & wanted:
                edits += [Edit(start, start + len(DISABLED), "") for start, _ in run]
            run = []
        position += len(line)
    return edits


def _defined_classes(code: str) -> set[str]:
    try:
        return {node.name for node in ast.parse(code).body if isinstance(node, ast.ClassDef)}
    except SyntaxError:
        return set()


def verify_compiles(texts: Mapping[Path, str | None]) -> None:
    for path, text in texts.items():
        if text is None or path.suffix != ".py":
            continue
        try:
            compile(text.lstrip("\ufeff"), str(path), "exec")
        except SyntaxError as exc:
            raise YolopatchError(
                f"{path}:{exc.lineno}: internal error: the edited file would not compile; nothing was written. "
                "Please report this."
            ) from None


# --- a user's module file, copied into the target as a module of its own -----------------------------------

_OWN = re.compile(
    r"# yolopatch (?P<version>\S+): (?P<source>.+?) as a module of its own; sha256 (?P<digest>[0-9a-f]{12})\."
)


def own_module_text(source_text: str, source: str) -> str:
    """The user's file as a target module: one header line (what it is, a checksum of the rest), then the
    file's text as it is (imports already pointed at the target)."""
    body = source_text.lstrip("\ufeff")
    header = (
        f"# yolopatch {__version__}: {source} as a module of its own; sha256 {block_digest(body)}. "
        "`yolopatch inject --revert` deletes this file."
    )
    return f"{header}\n{body}"


def own_module_state(text: str | None) -> str:
    """ "absent", "ours" (unchanged since written), "edited" (ours, changed since), or "foreign"."""
    if text is None:
        return "absent"
    first, _, rest = text.partition("\n")
    match = _OWN.match(first)
    if not match:
        return "foreign"
    return "ours" if block_digest(rest) == match.group("digest") else "edited"


def own_module_change(path: Path, existing: str | None, wanted: str, force: bool) -> FileChange:
    """Create or update a copied module; never overwrite a file that is not ours, or ours edited by hand."""
    state = own_module_state(existing)
    if state == "foreign" and existing != wanted:
        raise YolopatchError(
            f"{path}: exists and is not a file yolopatch wrote; nothing was changed. Rename it, or remove it."
        )
    if state == "edited" and not force:
        raise YolopatchError(
            f"{path}: you edited yolopatch's copy of your module since it was written; injecting again would "
            "lose those edits, so nothing was changed. Edit your own file instead (then `ops add` it again), or "
            "run again with --force."
        )
    return FileChange(path, existing, wanted)


def own_module_removal(path: Path, existing: str | None, force: bool) -> FileChange:
    state = own_module_state(existing)
    if state == "edited" and not force:
        raise YolopatchError(
            f"{path}: you edited yolopatch's copy of your module since it was written; reverting would delete "
            "those edits, so nothing was changed. Copy out what you want to keep, then run again with --force."
        )
    return FileChange(path, existing, None if state in ("ours", "edited") else existing)


def own_modules_of(body: str) -> set[str]:
    """The copied modules a block imports from (`from .yolopatch_se import SE as _SEBase`)."""
    try:
        tree = ast.parse(body)
    except SyntaxError:
        return set()
    return {
        node.module
        for node in tree.body
        if isinstance(node, ast.ImportFrom)
        and node.level == 1
        and node.module
        and node.module.startswith("yolopatch_")
    }


def retarget_imports(text: str, path: Path, rewrite: Mapping[str, str]) -> str:
    """The file's `from MODULE import ...` statements with MODULE replaced where `rewrite` names it (ast
    positions; nothing else changes)."""
    tree = parse_python(text, path)
    edits = []
    for node in tree.body:
        module = node.module if isinstance(node, ast.ImportFrom) and not node.level else None
        if module is not None and module in rewrite:
            at = text.index(module, offset(text, node.lineno, node.col_offset))
            edits.append(Edit(at, at + len(module), rewrite[module]))
    return splice(text, edits)


def block_edits(
    path: Path,
    text: str,
    name: str,
    registry: str,
    body: str,
    block: Block | None,
    foreign: Sequence[ast.ClassDef],
    added: set[str],
    force: bool,
    actions: list[str],
    at: int | None = None,
) -> list[Edit]:
    """An operator's block appended to `text` (inserted at offset `at` when given; or updated to this
    version's), with the sites it registered (`added`); a class of the same name the file defines itself
    (`foreign`, pasted from a blog post?) is refused, or disabled with --force (--revert restores it)."""
    if foreign and not force:
        raise YolopatchError(
            f"{path}:{foreign[0].lineno}: already defines its own `class {foreign[0].name}` (pasted from a blog "
            "post?). Remove it, or run again with --force to disable it and use yolopatch's (--revert restores it)."
        )
    edits = disable_classes(text, foreign)
    if foreign:
        actions.append(
            f"{path.name}: disabled the existing class {foreign[0].name} at line {foreign[0].lineno}"
        )
    added = added | (set(block.added) if block else set())
    forced = bool(foreign) or (block is not None and block.forced)
    wanted = compose_block(name, registry, body, sorted(added), forced, newline_of(text))
    if block is None:
        where = len(text) if at is None else at
        edits.append(Edit(where, where, wanted))
        verb = "appended" if at is None else "added"
        actions.append(f"{path.name}: {verb} class {name} (yolopatch {__version__})")
    elif text[block.start : block.end] != wanted:
        edits.append(Edit(block.start, block.end, wanted))
        actions.append(f"{path.name}: updated class {name} from yolopatch {block.version} to {__version__}")
    return edits
