"""Reading a darknet `.cfg` file byte-faithfully: sections, their keys, and where each piece of text lies.

darknet reads a cfg line by line: whitespace is stripped, lines starting with `#` or `;` are comments,
`[type]` opens a section, `key=value` sets an option of the open one. The first section is the network's
(`[net]` or `[network]`); the layers after it are numbered from 0. Nothing here changes text: every key and
every index value keeps its exact span, so an edit can splice only the bytes it means to change.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from yolopatch.errors import YolopatchError

# darknet's own spellings of one layer type (string_to_layer_type), by the name this package uses
ALIASES = {
    "conv": "convolutional",
    "network": "net",
    "max": "maxpool",
    "avg": "avgpool",
    "conn": "connected",
    "soft": "softmax",
    "local_avg": "local_avgpool",
}
# keys whose values are layer indices (relative below 0, absolute from 0), by section type ("" any type)
INDEX_KEYS = {"route": ("layers",), "route_lhalf": ("layers",), "": ("from",)}

_LINE = re.compile(r"[^\r\n]*(?:\r\n|\n|\r)?")
_NUMBER = re.compile(r"\s*([+-]?\d+)")


@dataclass(frozen=True)
class Span:
    start: int
    end: int


@dataclass(frozen=True)
class Key:
    """One `key=value` line: the key as darknet reads it (whitespace removed), the value's raw text and
    span (an inline comment, which darknet does not know, stays part of it), and the line number."""

    name: str
    value: str
    span: Span  # of the value text
    line: int

    @property
    def text(self) -> str:
        """The value as darknet reads it: whitespace removed."""
        return "".join(self.value.split())


@dataclass(frozen=True)
class Ref:
    """One layer index written in a value: its text span and the number, relative (< 0) or absolute."""

    value: int
    span: Span


@dataclass(frozen=True)
class Section:
    """One `[type]` section: `index` numbers the layers from 0 (the network's section is -1)."""

    index: int
    kind: str  # the type, darknet's aliases resolved ("conv" -> "convolutional")
    written: str  # the type as the file wrote it
    keys: tuple[Key, ...]
    line: int  # of the header
    span: Span  # from the header line's start to the end of the section's last key line
    end: int  # where the next section's header line starts (or the text's end)

    def get(self, name: str, default: str | None = None) -> str | None:
        """The value of key `name` as darknet reads it (the last one written wins, as in darknet)."""
        found = [k for k in self.keys if k.name == name]
        return found[-1].text if found else default

    def key(self, name: str) -> Key | None:
        found = [k for k in self.keys if k.name == name]
        return found[-1] if found else None

    def number(self, name: str, default: int) -> int:
        """An integer option read the way darknet's atoi reads it: leading digits, anything after ignored."""
        value = self.get(name)
        if value is None:
            return default
        found = _NUMBER.match(value)
        return int(found.group(1)) if found else 0

    def refs(self) -> tuple[Ref, ...]:
        """The layer indices this section names (`[route] layers=`, `from=` of any type), in order."""
        names = (*INDEX_KEYS.get(self.kind, ()), *INDEX_KEYS[""])
        found: list[Ref] = []
        for key in self.keys:
            if key.name in names:
                found += index_values(key)
        return tuple(found)


@dataclass(frozen=True)
class Cfg:
    """A parsed cfg: its text, the network's section and the layers."""

    text: str
    name: str
    net: Section
    sections: tuple[Section, ...]

    def place(self, section: Section) -> str:
        return f"{self.name}:{section.line}: layer {section.index} [{section.written}]"


def index_values(key: Key) -> list[Ref]:
    """The integers of a comma-separated index list, each with its span: `-1, 61` gives -1 and 61; an
    inline comment (`180 ###P6`) is not part of any number, as darknet's atoi reads it."""
    found, offset = [], key.span.start
    for piece in key.value.split(","):
        number = _NUMBER.match(piece)
        if number is None:
            break
        found.append(Ref(int(number.group(1)), Span(offset + number.start(1), offset + number.end(1))))
        offset += len(piece) + 1
    return found


def parse_cfg(text: str, name: str = "<cfg>") -> Cfg:
    """Parse a cfg's text; raise YolopatchError naming the line for what darknet itself would refuse."""
    headers: list[tuple[str, int, int]] = []  # (type as written, line, start)
    keys: list[list[Key]] = []
    ends: list[int] = []
    position = 0
    for number, match in enumerate(_LINE.finditer(text), start=1):
        line = match.group()
        if not line:
            break
        stripped = line.strip().lstrip("\ufeff")  # a UTF-8 byte order mark stays in the text, unread
        if stripped.startswith("["):
            if not stripped.endswith("]"):
                raise YolopatchError(f"{name}:{number}: {stripped!r} opens a section without a closing ']'.")
            headers.append((stripped[1:-1].strip(), number, match.start()))
            keys.append([])
            ends.append(match.end())
        elif stripped and not stripped.startswith(("#", ";")):
            keys_of = _key_line(line, match.start(), number, name, bool(headers))
            keys[-1].append(keys_of)
            ends[-1] = match.end()
        position = match.end()
    if not headers or ALIASES.get(headers[0][0].lower(), headers[0][0].lower()) != "net":
        raise YolopatchError(f"{name}: not a darknet cfg: it must start with a [net] section.")
    starts = [start for _, _, start in headers] + [position]
    sections = tuple(
        Section(
            index=i - 1,
            kind=ALIASES.get(written.lower(), written.lower()),
            written=written,
            keys=tuple(keys[i]),
            line=line,
            span=Span(start, ends[i]),
            end=starts[i + 1],
        )
        for i, (written, line, start) in enumerate(headers)
    )
    return Cfg(text=text, name=name, net=sections[0], sections=sections[1:])


def _key_line(line: str, start: int, number: int, name: str, in_section: bool) -> Key:
    if not in_section:
        raise YolopatchError(f"{name}:{number}: {line.strip()!r} comes before any [section].")
    key, sep, value = line.partition("=")
    if not sep:
        raise YolopatchError(
            f"{name}:{number}: {line.strip()!r} is not key=value, a [section] or a # comment; darknet "
            "refuses it too."
        )
    body = value.rstrip("\r\n")
    offset = start + len(key) + 1
    return Key("".join(key.split()), body, Span(offset, offset + len(body)), number)
