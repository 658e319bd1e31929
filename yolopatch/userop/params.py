"""A user's constructor parameters as `ops add` reads them from the source (names, literal defaults,
annotations), and `--set` values read as literals of a parameter's type."""

from __future__ import annotations

import ast
from dataclasses import dataclass
from typing import Any


class _NoDefault:
    def __repr__(self) -> str:
        return "<required>"


REQUIRED: Any = _NoDefault()


@dataclass(frozen=True)
class Param:
    """One constructor parameter after `self`: its name and default (REQUIRED: none; a literal otherwise).

    `default_text` is the default's source, for defaults that are not literals (`nn.SiLU()`)."""

    name: str
    default: Any
    default_text: str
    keyword_only: bool = False
    annotation: str = ""  # as written (`int`), "" when there is none

    @property
    def required(self) -> bool:
        return self.default is REQUIRED

    def parse(self, text: str) -> Any:
        """`--set NAME=TEXT` for this parameter: a Python literal (or plain text), of the type its default or
        its annotation says; ValueError says what was expected."""
        expected = _ANNOTATED.get(self.annotation) if self.required else type(self.default)
        if expected is None:  # no default and no annotation: a bare word is a typo more often than text
            try:
                return ast.literal_eval(text)
            except (ValueError, SyntaxError):
                raise ValueError(
                    f"not a Python literal; write a number, True/False, or quoted text ('{text}')"
                ) from None
        return typed_value(text, expected, "" if self.required else repr(self.default))


_ANNOTATED = {"int": int, "float": float, "bool": bool, "str": str}
_KINDS = {
    int: "a whole number",
    float: "a number",
    bool: "True or False",
    str: "text",
    tuple: "a tuple",
    list: "a list",
}


def typed_value(text: str, expected: type | None, default: str = "") -> Any:
    """TEXT read as a Python literal (plain text when it is none), checked against `expected` (None: any):
    an int is a float too, a bool is not an int. ValueError names what was expected."""
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        value = text
    if expected is None or expected not in _KINDS:
        return value
    fits = isinstance(value, (int, float)) if expected is float else isinstance(value, expected)
    if not fits or (isinstance(value, bool) and expected is not bool):
        raise ValueError(f"not {_KINDS[expected]}" + (f" (the default is {default})" if default else ""))
    return value


def constructor_params(init: ast.FunctionDef, text: str) -> tuple[Param, ...]:
    """The parameters of `__init__` after self, with their literal defaults, as the file's text has them."""
    args = init.args
    positional = [*args.posonlyargs, *args.args][1:]  # without self
    defaults: list[ast.expr | None] = [None] * (len(positional) - len(args.defaults)) + list(args.defaults)
    params = [
        _param(a.arg, d, text, False, _annotation(a)) for a, d in zip(positional, defaults, strict=True)
    ]
    params += [
        _param(a.arg, d, text, True, _annotation(a))
        for a, d in zip(args.kwonlyargs, args.kw_defaults, strict=True)
    ]
    return tuple(params)


def _annotation(arg: ast.arg) -> str:
    return ast.unparse(arg.annotation) if arg.annotation is not None else ""


def _param(
    name: str, default: ast.expr | None, text: str, keyword_only: bool = False, annotation: str = ""
) -> Param:
    if default is None:
        return Param(name, REQUIRED, "", keyword_only, annotation)
    source = ast.get_source_segment(text.lstrip("\ufeff"), default) or ast.unparse(default)
    try:
        value = ast.literal_eval(default)
    except ValueError:
        value = source  # not a literal: recorded as its text, never passed by yolopatch
    return Param(name, value, source, keyword_only, annotation)
