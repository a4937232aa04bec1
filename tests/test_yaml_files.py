"""YAML read as data within bounds: regular files only, a size limit, no anchors or aliases, no
deep nesting, no key twice; one-line ``ConfigError`` naming the file."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from dermseg.errors import ConfigError
from dermseg.yaml_files import parse_yaml, read_yaml_file


def test_plain_yaml_is_read(tmp_path: Path) -> None:
    path = tmp_path / "ok.yaml"
    path.write_text("train:\n  lr: 1.0e-3\n  rates: [1, 2]\nloss: {terms: {bce: 1}}\n")
    assert read_yaml_file(path, "config file", 1024) == {
        "train": {"lr": 0.001, "rates": [1, 2]},
        "loss": {"terms": {"bce": 1}},
    }
    assert parse_yaml("") is None and parse_yaml("0.5") == 0.5


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("a: &x [1, 2]\nb: *x\n", "invalid YAML at line 1: anchors and aliases (& and *) are not allowed"),
        ("a: [&x 1, 2]\n", "invalid YAML at line 1: anchors and aliases"),
        ("a: 1\nb: 2\na: 3\n", "invalid YAML at line 3: duplicate key 'a'"),
        ("a:\n  b: 1\n  b: 1\n", "invalid YAML at line 3: duplicate key 'b'"),
        ("a: " + "[" * 21 + "]" * 21 + "\n", "nested more than 20 levels deep"),
        ("a: [1\n", "invalid YAML"),
        ("a: " + "9" * 5000 + "\n", "invalid YAML: Exceeds the limit (4300 digits)"),
        ("!!python/object/apply:os.system [ls]\n", "invalid YAML"),
    ],
)
def test_what_is_refused(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_yaml(text, "x.yaml")
    assert str(err.value).startswith("x.yaml: ") and message in str(err.value)
    assert len(str(err.value).splitlines()) == 1


def test_twenty_levels_are_fine() -> None:
    assert parse_yaml("[" * 20 + "]" * 20) == [[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]


def test_files_that_are_not_small_regular_files(tmp_path: Path) -> None:
    def error(path: Path, limit: int = 1024) -> str:
        with pytest.raises(ConfigError) as err:
            read_yaml_file(path, "config file", limit)
        assert err.value.path == path
        return err.value.message

    assert error(tmp_path / "none.yaml") == "config file not found"
    assert error(tmp_path) == "is a folder, expected a YAML config file"
    fifo = tmp_path / "fifo.yaml"
    os.mkfifo(fifo)  # a reader would block until a writer comes: refused without waiting
    assert error(fifo) == "is a FIFO, expected a YAML config file (a regular file)"
    device = tmp_path / "zero.yaml"
    device.symlink_to("/dev/zero")  # endless: refused before reading
    assert error(device) == "is a device, expected a YAML config file (a regular file)"
    big = tmp_path / "big.yaml"
    big.write_text("#" * 2048)
    assert error(big, 2048 - 1) == "config file is larger than 2047 bytes, the most dermseg reads"
    assert error(big, 1024) == "config file is larger than 1 KiB, the most dermseg reads"
    assert read_yaml_file(big, "config file", 2048) is None  # at the limit: read
    latin = tmp_path / "latin.yaml"
    latin.write_bytes(b"a: caf\xe9\n")
    assert error(latin) == "cannot read config file (not UTF-8 text: byte 6 is 0xe9)"
