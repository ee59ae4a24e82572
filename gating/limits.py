"""Limits on what a strategy file may ask of the engine, and reading untrusted documents within them.

Strategy files (YAML, Gating-ML, FlowJo workspaces) come from collaborators, old projects and
e-mail; a few hundred bytes must not be able to take gigabytes or minutes, nor a damaged file to
end in a traceback. Every limit below is checked when the strategy is loaded, and breaking one is
a :class:`~gating.StrategyError` naming the file, what was found and the limit:

========================== ============ ===========================================================
limit                      value        what it bounds
========================== ============ ===========================================================
MAX_YAML_BYTES             10 MiB       size of a YAML file (strategy, panel, markers, overrides)
MAX_XML_BYTES              100 MiB      size of a Gating-ML document or FlowJo workspace
MAX_YAML_NESTING           100          YAML nesting (lists and mappings inside each other,
                                        counted through aliases)
MAX_YAML_NODES             1,000,000    YAML values, each alias counted as what it repeats (an
                                        802-byte "billion laughs" would be 10**9)
MAX_POLYGON_VERTICES       10,000       vertices of one polygon gate
MAX_POPULATIONS            10,000       populations of one strategy
MAX_DEPTH                  100          populations from the root to the deepest (parent chain)
MAX_NAME_LENGTH            256          characters of a population's name (its label)
MAX_NUMBER_CHARACTERS      100          characters of one number in an XML attribute
========================== ============ ===========================================================

Messages quote at most :data:`EXCERPT` characters of what a file holds (:func:`excerpt`).
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

from .errors import StrategyError

MAX_YAML_BYTES = 10 * 2**20
MAX_XML_BYTES = 100 * 2**20
MAX_YAML_NESTING = 100
MAX_YAML_NODES = 1_000_000
MAX_POLYGON_VERTICES = 10_000
MAX_POPULATIONS = 10_000
MAX_DEPTH = 100
MAX_NAME_LENGTH = 256
MAX_NUMBER_CHARACTERS = 100
#: characters of a file's content a message quotes at most
EXCERPT = 60


def excerpt(value: object, limit: int = EXCERPT) -> str:
    """``repr(value)`` cut to about ``limit`` characters, saying how long it was when cut:
    ``'xxxxxxxx...' (50,000,000 characters)``."""
    if isinstance(value, (str, bytes)) and len(value) > limit:
        return f"{value[:limit]!r}... ({len(value):,} characters)"
    text = repr(value)
    if len(text) > limit:
        return f"{text[:limit]}... ({len(text):,} characters)"
    return text


def _size(n: int) -> str:
    return f"{n / 2**20:.0f} MiB" if n >= 2**20 else f"{n:,} bytes"


def read_document(path: str | os.PathLike, what: str, limit: int, error: type[Exception]) -> bytes:
    """The bytes of a regular file of at most ``limit`` bytes; ``error`` naming the file and
    ``what`` it should be when it is missing, not a regular file (a FIFO would block), too large
    or unreadable."""
    name = os.fspath(path)
    try:
        st = os.stat(name)
    except FileNotFoundError:
        raise error(f"{name}: {what} not found") from None
    except OSError as exc:
        raise error(f"{name}: cannot read the {what} ({exc.strerror or exc})") from None
    if stat.S_ISDIR(st.st_mode):
        raise error(f"{name}: is a directory, not a {what}")
    if not stat.S_ISREG(st.st_mode):
        raise error(f"{name}: is {_kind(st.st_mode)}, not a regular file: not read as a {what}")
    if st.st_size > limit:
        raise error(
            f"{name}: {st.st_size:,} bytes, more than a {what} may have ({_size(limit)}); not read"
        )
    try:
        with open(name, "rb") as f:
            data = f.read(st.st_size + 1)  # read(n) allocates n bytes: not the limit
            if len(data) > st.st_size:  # it grew since it was looked at
                data += f.read(limit + 1 - len(data))
    except OSError as exc:
        raise error(f"{name}: cannot read the {what} ({exc.strerror or exc})") from None
    if len(data) > limit:  # it grew since it was looked at
        raise error(f"{name}: more bytes than a {what} may have ({_size(limit)}); not read")
    return data


def _kind(mode: int) -> str:
    """What a file that is not a regular file is, for messages ('a FIFO (named pipe)' ...)."""
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode):
        return "a character device"
    if stat.S_ISBLK(mode):
        return "a block device"
    return "not a regular file"


def decode_utf8(data: bytes, path: str | os.PathLike, what: str, error: type[Exception]) -> str:
    """``data`` as UTF-8 text (a byte-order mark is dropped); ``error`` saying at which byte it is
    not UTF-8 (e.g. a Latin-1 file: 'é' is byte 0xE9)."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise error(
            f"{Path(path)}: {what} is not UTF-8 text: byte {exc.start} (line {line}) is "
            f"0x{data[exc.start]:02X}; save it as UTF-8 (in Latin-1, 'é' is the byte 0xE9)"
        ) from None


# --- YAML documents ---------------------------------------------------------------------------


def _yaml_loader() -> type:
    import yaml

    return getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when installed


def _check_yaml_shape(text: str, where: str, error: type[Exception]) -> None:
    """``error`` when the YAML in ``text`` nests deeper than MAX_YAML_NESTING or holds more than
    MAX_YAML_NODES values, counting each alias as what it repeats, so that a few hundred bytes
    of anchors and aliases (a "billion laughs") cannot expand into gigabytes. Works on the
    parser's events, before anything is built (building is where deep nesting and expansion
    would cost)."""
    import yaml

    total = 0
    anchors: dict[str, tuple[int, int] | None] = {}  # name -> (values, depth); None: still open
    # per open collection: [anchor, total when it opened, depth of its deepest value below it]
    stack: list[list] = []

    def add(values: int, depth: int) -> None:
        nonlocal total
        total += values
        if total > MAX_YAML_NODES:
            raise error(
                f"{where}: more than {MAX_YAML_NODES:,} values (aliases counted as what they "
                "repeat); not read"
            )
        if len(stack) + depth > MAX_YAML_NESTING:
            raise error(
                f"{where}: lists and mappings nest deeper than {MAX_YAML_NESTING} levels "
                "(aliases counted as what they repeat); not read"
            )
        if stack and stack[-1][2] < depth:
            stack[-1][2] = depth

    for event in yaml.parse(text, Loader=_yaml_loader()):
        if isinstance(event, yaml.AliasEvent):
            known = anchors.get(event.anchor)
            if event.anchor in anchors and known is None:
                raise error(f"{where}: alias *{excerpt(event.anchor)} refers to a value it is in")
            if known is not None:  # an unknown anchor: the loader says so
                add(*known)
        elif isinstance(event, yaml.ScalarEvent):
            add(1, 1)
            if event.anchor is not None:
                anchors[event.anchor] = (1, 1)
        elif isinstance(event, (yaml.SequenceStartEvent, yaml.MappingStartEvent)):
            add(1, 1)
            if event.anchor is not None:
                anchors[event.anchor] = None
            stack.append([event.anchor, total - 1, 0])
        elif isinstance(event, (yaml.SequenceEndEvent, yaml.MappingEndEvent)):
            anchor, start, below = stack.pop()
            depth = below + 1
            if stack and stack[-1][2] < depth:
                stack[-1][2] = depth
            if anchor is not None:
                anchors[anchor] = (total - start, depth)


def read_yaml(path: str | os.PathLike, what: str, error: type[Exception] = StrategyError) -> Any:
    """The parsed content of a YAML file (safe loader); ``error`` naming the file and ``what`` it
    should be when it is missing, not a regular file, larger than MAX_YAML_BYTES, not UTF-8,
    not valid YAML, or nests or expands (aliases) beyond the limits of :mod:`gating.limits`."""
    import yaml

    data = read_document(path, what, MAX_YAML_BYTES, error)
    text = decode_utf8(data, path, what, error)
    try:
        _check_yaml_shape(text, f"{path}", error)
        return yaml.load(text, Loader=_yaml_loader())  # noqa: S506 - a safe loader
    except yaml.YAMLError as exc:
        if "maximum nesting depth" in str(exc):  # libyaml's own limit (1000) came first
            raise error(
                f"{path}: lists and mappings nest deeper than {MAX_YAML_NESTING} levels; not read"
            ) from None
        raise error(f"{path}: not valid YAML ({exc})") from None
    except RecursionError:  # not reached within the limits; never a traceback
        raise error(f"{path}: nests too deeply to read") from None
