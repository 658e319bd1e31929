"""What `ops add` reads from a user's file with `ast`, before anything is imported.

The class, its constructor's parameters and literal defaults, its `forward` signature, the file's imports
(those from a target are named: the probe and `inject` must satisfy them), and the module-level helpers the
class needs. A forward that takes one list of tensors makes a fusion class (yolopatch.userop.fusion); shapes
this version cannot take (heads, a forward with several tensor parameters) are refused here, from the source,
so the probe never has to guess them from a crash.
"""

from __future__ import annotations

import ast
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from yolopatch.errors import YolopatchError
from yolopatch.userop.params import Param, constructor_params
from yolopatch.userop.shapes import backbone_like, head_refusal

_TORCH_BASES = frozenset({"nn.Module", "torch.nn.Module", "Module"})
_LIST_ANNOTATIONS = frozenset({"list", "List", "tuple", "Tuple", "Sequence"})
_HEAD_PARAMETERS = frozenset({"nc", "anchors", "num_classes"})


@dataclass(frozen=True)
class ImportKind:
    """How a user's file imports a family's building blocks: modules under `prefixes` (a prefix ending in "."
    takes its submodules only), written like `example`. Families that share a layout share one kind."""

    name: str
    prefixes: tuple[str, ...]
    example: str
    heads: tuple[str, ...] = ()  # the detection heads a user's head may subclass (Detect, IDetect, ...)
    head_modules: tuple[str, ...] = ()  # the modules they are imported from
    head_fix: str = ""  # how a plain copy of a head becomes one: the import of the head, what to keep

    def holds(self, module: str) -> bool:
        return any(module == p.rstrip(".") or module.startswith(p.rstrip(".") + ".") for p in self.prefixes)


@dataclass(frozen=True)
class TargetImport:
    """`from MODULE import NAME` of a target's module (its Conv, its models.common); `family`: the kind's name."""

    family: str
    module: str
    names: tuple[str, ...]
    line: int


@dataclass(frozen=True)
class ClassSource:
    path: Path
    name: str
    line: int
    params: tuple[Param, ...]
    target_imports: tuple[TargetImport, ...]
    helpers: tuple[str, ...]  # module-level classes and functions of the file that the class uses
    digest: str  # sha256 of the file's bytes
    inputs: str = "one"  # "list": its forward takes one list of feature maps (a fusion class)
    outputs: str = "one"  # "list": it visibly returns a list of maps, or states its widths (a backbone)
    factory: bool = False  # a function of the file that returns the module (a backbone's factory)
    head: str = ""  # a detection head: the target's class it subclasses ("Detect")

    def param(self, name: str) -> Param | None:
        return next((p for p in self.params if p.name == name), None)

    @property
    def families(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(i.family for i in self.target_imports))


def file_digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def read_class(path: Path, name: str, kinds: Sequence[ImportKind]) -> ClassSource:
    """Find `name` in the file at `path` and read what the probe and the record need; raise YolopatchError
    naming the file and line when the class is missing, is not a module or has a shape refused here.
    `kinds`: the targets' imports to recognise among the file's."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise YolopatchError(f"{path}: no such file.") from None
    except OSError as exc:
        raise YolopatchError(f"{path}: cannot read it ({exc.strerror}).") from None
    try:
        text = data.decode("utf-8")
        tree = ast.parse(text.lstrip("\ufeff"), str(path))
    except UnicodeDecodeError as exc:
        raise YolopatchError(f"{path}: byte {exc.start} is not UTF-8; save it as UTF-8.") from None
    except SyntaxError as exc:
        raise YolopatchError(
            f"{path}:{exc.lineno}: does not parse as Python ({exc.msg}); fix it first."
        ) from None
    relative = next((n for n in tree.body if isinstance(n, ast.ImportFrom) and n.level), None)
    if relative is not None:
        names = ", ".join(a.name for a in relative.names)
        raise YolopatchError(
            f"{path}:{relative.lineno}: a relative import (from {'.' * relative.level}{relative.module or ''} "
            f"import {names}) cannot be resolved outside its package; import from the target by its full "
            f"name ({' or '.join(f'`{kind.example}`' for kind in kinds)})."
        )
    classes = {n.name: n for n in tree.body if isinstance(n, ast.ClassDef)}
    node = classes.get(name)
    function = next((n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == name), None)
    if node is None and function is not None:
        return _factory_source(path, function, tree, text, data, kinds)
    if node is None:
        known = ", ".join(classes) or "none"
        raise YolopatchError(f"{path}: defines no top-level class {name}; its classes: {known}.")
    where = f"{path}:{node.lineno}: class {name}"
    imported = _imported_names(tree)
    if not _is_module(node, classes, imported):
        raise YolopatchError(f"{where} is not a torch module (it does not derive from nn.Module).")
    outputs = "list" if backbone_like(_lineage(node, classes), _method(node, classes, "forward")) else "one"
    head = _head_base(tree, node, classes, kinds)
    if head:
        init = _method(node, classes, "__init__")
        params, inputs = (constructor_params(init, text) if init is not None else ()), "one"
    else:
        fixes = _head_fixes(_target_imports(tree, kinds), kinds)
        params, inputs = _constructor_and_forward(where, node, classes, imported, text, outputs, fixes)
    return ClassSource(
        path=path,
        name=name,
        line=node.lineno,
        params=params,
        target_imports=_target_imports(tree, kinds),
        helpers=_helpers(tree, node),
        digest=file_digest(data),
        inputs=inputs,
        outputs=outputs,
        head=head,
    )


def _head_fixes(imports: Sequence[TargetImport], kinds: Sequence[ImportKind]) -> str:
    """How to make a head of the families the file imports (of every family with heads, if none)."""
    families = {i.family for i in imports}
    chosen = [k for k in kinds if k.head_fix and (k.name in families or not families)]
    return "; ".join(k.head_fix for k in chosen or [k for k in kinds if k.head_fix])


def _head_base(
    tree: ast.Module, node: ast.ClassDef, classes: dict[str, ast.ClassDef], kinds: Sequence[ImportKind]
) -> str:
    """The target's detection head the class subclasses, directly or through a class of the file (a kind's
    `head`, imported from one of its modules): its name ("Detect"); "" otherwise."""
    bound: dict[str, str] = {}
    for kind in kinds:
        for n in tree.body:
            if isinstance(n, ast.ImportFrom) and n.module in kind.head_modules and not n.level:
                bound.update({a.asname or a.name: a.name for a in n.names if a.name in kind.heads})
    for cls in _lineage(node, classes):
        for written in (ast.unparse(b) for b in cls.bases):
            if written in bound:
                return bound[written]
    return ""


def _factory_source(
    path: Path,
    function: ast.FunctionDef,
    tree: ast.Module,
    text: str,
    data: bytes,
    kinds: Sequence[ImportKind],
) -> ClassSource:
    """A factory function of the file (`def mobilenet_small(**kwargs): return MobileNet(...)`): its
    parameters are the options; the probe calls it and judges what it returns."""
    args = function.args
    shifted = ast.arguments(
        posonlyargs=[],
        args=[ast.arg("self"), *args.posonlyargs, *args.args],
        vararg=None,
        kwonlyargs=args.kwonlyargs,
        kw_defaults=args.kw_defaults,
        kwarg=None,
        defaults=args.defaults,
    )
    init = ast.FunctionDef(name=function.name, args=shifted, body=[], decorator_list=[])  # type: ignore[call-arg]
    return ClassSource(
        path=path,
        name=function.name,
        line=function.lineno,
        params=constructor_params(init, text),
        target_imports=_target_imports(tree, kinds),
        helpers=_helpers(tree, function),  # type: ignore[arg-type]
        digest=file_digest(data),
        outputs="list",
        factory=True,
    )


def _constructor_and_forward(
    where: str,
    node: ast.ClassDef,
    classes: dict[str, ast.ClassDef],
    imported: set[str],
    text: str,
    outputs: str = "one",
    fixes: str = "",
) -> tuple[tuple[Param, ...], str]:
    """The constructor's parameters and what the forward takes ("one" map or a "list"), once the class is
    known to have a forward (its own, a base's in the file, one bound in __init__, or an imported base's,
    which the probe runs) and a shape this version takes."""
    init = _method(node, classes, "__init__")
    inherited = _imported_base(node, classes, imported)
    if init is None and inherited:
        raise YolopatchError(
            f"{where} takes its constructor from {inherited}, defined outside the file: yolopatch reads the "
            "parameters from the source; write an __init__ with them that calls super().__init__."
        )
    forwards = _forwards(node, classes)
    if forwards is None and not inherited:
        raise YolopatchError(
            f"{where} has no forward method (its own, a base's in the file, or one bound in __init__ with "
            "`self.forward = self.METHOD`)."
        )
    params = constructor_params(init, text) if init is not None else ()
    _refuse_shapes(where, params, None, outputs, inherited, fixes)
    kinds = {_refuse_shapes(where, params, forward, outputs, inherited, fixes) for forward in forwards or []}
    return params, "list" if "list" in kinds else "one"


def _imported_names(tree: ast.Module) -> set[str]:
    names: set[str] = set()
    for n in tree.body:
        if isinstance(n, (ast.Import, ast.ImportFrom)):
            names.update(a.asname or a.name.split(".")[0] for a in n.names)
    return names


def _is_module(node: ast.ClassDef, classes: dict[str, ast.ClassDef], imported: set[str]) -> bool:
    """Derives from nn.Module, from a class of the file that does, or from an imported class (a target's
    block such as Conv or C2f: the probe confirms it)."""
    for base in node.bases:
        text = ast.unparse(base)
        if text in _TORCH_BASES or text.split(".")[0] in imported - {"torch", "nn"}:
            return True
        if text.startswith(("nn.", "torch.nn.")):  # nn.Sequential, nn.Conv2d: torch's own modules
            return True
        if text in classes and classes[text] is not node and _is_module(classes[text], classes, imported):
            return True
    return False


def _lineage(node: ast.ClassDef, classes: dict[str, ast.ClassDef]) -> list[ast.ClassDef]:
    """The class and its bases defined in the file, in the order Python looks methods up (depth first)."""
    found = [node]
    for base in node.bases:
        parent = classes.get(ast.unparse(base))
        if parent is not None and parent is not node:
            found += [c for c in _lineage(parent, classes) if c not in found]
    return found


def _imported_base(node: ast.ClassDef, classes: dict[str, ast.ClassDef], imported: set[str]) -> str:
    """The first base of the class or of its bases in the file that comes from elsewhere and has a forward
    of its own (a target's C2f or C3, torch's nn.Sequential); "" when there is none."""
    for cls in _lineage(node, classes):
        for base in cls.bases:
            text = ast.unparse(base)
            if text in classes or text in _TORCH_BASES:
                continue
            if text.split(".")[0] in imported - {"torch", "nn"} or text.startswith(("nn.", "torch.nn.")):
                return text
    return ""


def _forwards(node: ast.ClassDef, classes: dict[str, ast.ClassDef]) -> list[ast.FunctionDef] | None:
    """The forwards the class may run, from the file: its own or a base's `forward`, and the methods
    `__init__` binds to `self.forward` ([]: bound to something else, such as a module); None: none."""
    found = [f for f in [_method(node, classes, "forward")] if f is not None]
    bound = [b for cls in _lineage(node, classes) for b in _bound_forwards(cls)]
    for name in bound:
        method = _method(node, classes, name) if name else None
        if method is not None and method not in found:
            found.append(method)
    return found if found or bound else None


def _bound_forwards(cls: ast.ClassDef) -> list[str]:
    """`self.forward = self.NAME` in the class's own methods: NAME ("" when it is bound to anything else)."""
    names = []
    for item in cls.body:
        if not isinstance(item, ast.FunctionDef):
            continue
        for node in ast.walk(item):
            if isinstance(node, ast.Assign) and any(_is_self_attribute(t, "forward") for t in node.targets):
                value = node.value
                method = isinstance(value, ast.Attribute) and _is_name(value.value, "self")
                names.append(value.attr if isinstance(value, ast.Attribute) and method else "")
    return names


def _is_self_attribute(node: ast.AST, name: str) -> bool:
    return isinstance(node, ast.Attribute) and node.attr == name and _is_name(node.value, "self")


def _method(node: ast.ClassDef, classes: dict[str, ast.ClassDef], name: str) -> ast.FunctionDef | None:
    """The method as the class resolves it: its own, else a base's in the same file."""
    for item in node.body:
        if isinstance(item, ast.FunctionDef) and item.name == name:
            return item
    for base in node.bases:
        parent = classes.get(ast.unparse(base))
        if parent is not None and parent is not node:
            found = _method(parent, classes, name)
            if found is not None:
                return found
    return None


def _refuse_shapes(
    where: str,
    params: tuple[Param, ...],
    forward: ast.FunctionDef | None,
    outputs: str = "one",
    inherited: str = "",
    fixes: str = "",
) -> str:
    """Heads, and forwards with several tensor parameters (None: a forward the file does not show: the
    probe runs it); what a forward takes: "one" map or a "list" of them. A backbone's `num_classes` (its
    classifier's, unused) is no head's."""
    head_names = _HEAD_PARAMETERS - ({"num_classes"} if outputs == "list" else set())
    heads = sorted(head_names & {p.name for p in params})
    if heads:
        raise YolopatchError(head_refusal(where, heads, inherited, fixes))
    if forward is None:
        return "one"
    inputs = [a for a in [*forward.args.posonlyargs, *forward.args.args][1:]]
    required = len(inputs) - len(forward.args.defaults)
    if required > 1:
        names = ", ".join(a.arg for a in inputs)
        raise YolopatchError(
            f"{where}: forward takes several tensors ({names}); YOLO passes one list: a row with a `from` list "
            f"calls forward(x) with x = [{names}]. Write `def forward(self, x):` and unpack `{names} = x` in it, "
            "then run `ops add` again."
        )
    first = inputs[0] if inputs else None
    return "list" if first is not None and _takes_a_list(first, forward) else "one"


def _takes_a_list(arg: ast.arg, forward: ast.FunctionDef) -> bool:
    """The input is a list: annotated so, indexed by a constant, unpacked, iterated over, or handed to
    len/zip/enumerate/sum or torch.cat/stack."""
    if arg.annotation is not None and ast.unparse(arg.annotation).split("[")[0] in _LIST_ANNOTATIONS:
        return True
    return any(_uses_as_list(node, arg.arg) for node in ast.walk(forward))


_LIST_CALLS = frozenset({"len", "zip", "enumerate", "sum", "reversed", "cat", "concat", "stack"})


def _uses_as_list(node: ast.AST, name: str) -> bool:
    if isinstance(node, ast.Subscript) and _is_name(node.value, name):
        return isinstance(node.slice, ast.Constant) and isinstance(node.slice.value, int)
    if isinstance(node, ast.Assign) and _is_name(node.value, name):
        return any(isinstance(t, (ast.Tuple, ast.List)) for t in node.targets)  # `a, b, c = x`
    if isinstance(node, (ast.For, ast.comprehension)):
        return _is_name(node.iter, name)
    if isinstance(node, ast.Call):
        func = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
        return func in _LIST_CALLS and any(_is_name(a, name) for a in node.args)
    return False


def _is_name(node: ast.AST, name: str) -> bool:
    return isinstance(node, ast.Name) and node.id == name


def _target_imports(tree: ast.Module, kinds: Sequence[ImportKind]) -> tuple[TargetImport, ...]:
    found = []
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and node.module and not node.level:
            kind = next((k for k in kinds if k.holds(node.module)), None)
            if kind is not None:
                names = tuple(a.name for a in node.names)
                found.append(TargetImport(kind.name, node.module, names, node.lineno))
    return tuple(found)


def _helpers(tree: ast.Module, node: ast.ClassDef) -> tuple[str, ...]:
    """Top-level classes and functions of the file that the class reaches, directly or through another."""
    defined = {n.name: n for n in tree.body if isinstance(n, (ast.ClassDef, ast.FunctionDef))}
    seen: list[str] = []
    pending = [node]
    while pending:
        current = pending.pop()
        used = {n.id for n in ast.walk(current) if isinstance(n, ast.Name)}
        for name in sorted(used & set(defined)):
            if name != node.name and name not in seen:
                seen.append(name)
                pending.append(defined[name])  # type: ignore[arg-type]
    return tuple(seen)
