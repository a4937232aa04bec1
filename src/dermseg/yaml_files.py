"""YAML read as data, within bounds: what reading a config may cost in memory and time.

A YAML file dermseg reads is a small mapping written by hand, so anything else is refused in one
line before it can cost much: a path that is not a regular file (a FIFO would block, a device
never ends), a file over a size limit, anchors and aliases (a "billion laughs" expands a few lines
into gigabytes), nesting deeper than any config needs, and a key given twice in one mapping (YAML
itself keeps the last one silently).
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

import yaml
from yaml.composer import ComposerError
from yaml.constructor import ConstructorError

from dermseg.errors import ConfigError, shown_value

#: How deeply collections may nest (a run config needs three levels: section, field, value).
MAX_DEPTH = 20


class _DataLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses anchors, aliases, deep nesting and duplicate keys."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None):
            raise ComposerError(None, None, "anchors and aliases (& and *) are not allowed", event.start_mark)
        if self._depth >= MAX_DEPTH:
            raise ComposerError(None, None, f"nested more than {MAX_DEPTH} levels deep", event.start_mark)
        self._depth += 1
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_mapping(self, node: Any, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _value in node.value:
            key = self.construct_object(key_node, deep=True)
            try:
                duplicate = key in seen
                seen.add(key)
            except TypeError:  # an unhashable key: the base class reports it
                continue
            if duplicate:
                raise ConstructorError(None, None, f"duplicate key {shown_value(key)}", key_node.start_mark)
        return super().construct_mapping(node, deep)


def parse_yaml(text: str, path: str | Path | None = None) -> Any:
    """``text`` as plain data (mappings, lists, scalars), by the rules of :mod:`dermseg.yaml_files`.

    Raises:
        ConfigError: ``invalid YAML at line N: <problem>``, naming ``path`` when given.
    """
    try:
        return yaml.load(text, Loader=_DataLoader)  # noqa: S506 - a SafeLoader
    except ValueError as err:  # an integer of more than 4300 digits (Python's own limit)
        raise ConfigError(f"invalid YAML: {str(err).split(':')[0]}", path) from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        at = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise ConfigError(f"invalid YAML{at}: {problem}", path) from None


def _kind(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def _size(n: int) -> str:
    return f"{n // 2**20} MiB" if n % 2**20 == 0 else f"{n // 1024} KiB" if n % 1024 == 0 else f"{n} bytes"


def read_yaml_file(path: str | Path, what: str, max_bytes: int) -> Any:
    """The data of a small YAML file (:func:`parse_yaml`), read only if it is a regular file of at
    most ``max_bytes`` bytes of UTF-8 text.

    Args:
        path: the file.
        what: what the file is, for the messages (``"config file"``).
        max_bytes: the size limit, stated in the error.

    Raises:
        ConfigError: not found, a folder, a FIFO or device, unreadable, too large, not UTF-8, or
            invalid YAML; one line naming ``path``.
    """
    path = Path(path)
    try:  # non-blocking, so that opening a FIFO returns at once (it is refused just below)
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    except FileNotFoundError:
        raise ConfigError(f"{what} not found", path) from None
    except IsADirectoryError:
        raise ConfigError(f"is a folder, expected a YAML {what}", path) from None
    except OSError as err:
        raise ConfigError(f"cannot read {what} ({err.strerror or err})", path) from None
    try:
        mode = os.fstat(fd).st_mode
        if stat.S_ISDIR(mode):
            raise ConfigError(f"is a folder, expected a YAML {what}", path)
        if not stat.S_ISREG(mode):
            raise ConfigError(f"is {_kind(mode)}, expected a YAML {what} (a regular file)", path)
        chunks: list[bytes] = []
        size = 0
        while size <= max_bytes and (chunk := os.read(fd, max_bytes + 1 - size)):
            chunks.append(chunk)
            size += len(chunk)
    except OSError as err:
        raise ConfigError(f"cannot read {what} ({err.strerror or err})", path) from None
    finally:
        os.close(fd)
    data = b"".join(chunks)
    if len(data) > max_bytes:
        raise ConfigError(f"{what} is larger than {_size(max_bytes)}, the most dermseg reads", path)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        where = f"byte {err.start} is {data[err.start]:#x}"
        raise ConfigError(f"cannot read {what} (not UTF-8 text: {where})", path) from None
    return parse_yaml(text, path)
