"""Atomic writes (dermseg.files): one file mode policy, groups renamed together, a full disk named."""

from __future__ import annotations

import errno
import os
import stat
import tempfile
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from dermseg.errors import OutputError
from dermseg.files import atomic_path, atomic_paths, is_temporary, remove_temporaries, write_new


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_every_output_gets_the_mode_open_gives(tmp_path: Path, umask: int) -> None:
    def replaces_the_file(tmp: Path) -> None:  # a writer that makes its own file (mkstemp: 0600)
        fd, other = tempfile.mkstemp(dir=tmp.parent)
        os.close(fd)
        os.replace(other, tmp)

    writers = {
        "plain.txt": lambda tmp: tmp.write_text("x"),
        "weights.safetensors": lambda tmp: save_file({"a": torch.zeros(2)}, str(tmp)),
        "state.pt": lambda tmp: torch.save({"a": 1}, tmp),
        "replaced.bin": replaces_the_file,
    }
    old = os.umask(umask)
    try:
        for name, write in writers.items():
            with atomic_path(tmp_path / name) as tmp:
                write(tmp)
        with open(tmp_path / "reference.txt", "w") as fh:
            fh.write("x")
    finally:
        os.umask(old)
    expected = _mode(tmp_path / "reference.txt")
    assert expected == 0o666 & ~umask
    assert {name: _mode(tmp_path / name) for name in writers} == dict.fromkeys(writers, expected)


def test_a_group_is_renamed_together_or_not_at_all(tmp_path: Path) -> None:
    paths = [tmp_path / f"{k}.png" for k in range(3)]
    paths[0].write_text("old")
    with pytest.raises(KeyError), atomic_paths(paths) as temps:
        temps[0].write_text("new")
        temps[1].write_text("new")
        raise KeyError("the third could not be made")
    assert paths[0].read_text() == "old" and not paths[1].exists() and sorted(tmp_path.iterdir()) == paths[:1]
    with atomic_paths(paths) as temps:
        assert all(is_temporary(t.name) for t in temps)
        for t in temps:
            t.write_text("new")
    assert [p.read_text() for p in paths] == ["new"] * 3 and sorted(tmp_path.iterdir()) == paths


@pytest.mark.parametrize(
    "error",
    [
        OSError(errno.ENOSPC, "No space left on device"),
        OSError(errno.EDQUOT, "Disk quota exceeded"),
        RuntimeError("[enforce fail at inline_container.cc:603] . unexpected pos 4160 vs 4054"),
        Exception('Error while serializing: IoError(Os { code: 28, message: "No space left on device" })'),
    ],
)
def test_a_full_disk_is_one_line_naming_the_target(tmp_path: Path, error: Exception) -> None:
    target = tmp_path / "checkpoints" / "last.safetensors"
    with pytest.raises(OutputError) as err, atomic_path(target):
        raise error
    assert err.value.path == target and "\n" not in str(err.value)
    assert not list(target.parent.iterdir())


def test_other_errors_pass_through(tmp_path: Path) -> None:
    with pytest.raises(PermissionError), atomic_path(tmp_path / "x"):
        raise PermissionError(errno.EACCES, "Permission denied")


def test_only_dermseg_temporaries_are_recognised() -> None:
    assert is_temporary(".ISIC_0000001_overlay.png.k2x_9abc.tmp.png")
    assert is_temporary(".metrics.jsonl.abcdefgh.tmp.jsonl") and is_temporary(".README.abcdefgh.tmp")
    for name in (".notes.tmp.png", "x.abcdefgh.tmp.png", ".a.png.abcdefgh.tmp.jpg", ".a.png.abc.tmp.png"):
        assert not is_temporary(name), name


def test_writers_sharing_a_folder_remove_only_their_own_temporaries(tmp_path: Path) -> None:
    mine, theirs = ".a_mask.png.abcdefgh.tmp.png", ".b_mask.png.abcdefgh.tmp.png"
    for name in (mine, theirs, "a_mask.png"):
        (tmp_path / name).write_bytes(b"x")
    removed = remove_temporaries(tmp_path, owned=lambda target: target.startswith("a_"))
    assert removed == [tmp_path / mine]
    assert sorted(p.name for p in tmp_path.iterdir()) == [theirs, "a_mask.png"]


def test_write_new_writes_only_a_file_that_is_not_there(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "manifest.json"
    assert write_new(path, b"first") and path.read_bytes() == b"first"
    assert not write_new(path, b"second") and path.read_bytes() == b"first"
    assert _mode(path) == 0o666 & ~_umask()
    assert sorted(p.name for p in path.parent.iterdir()) == ["manifest.json"]  # no temporary left


def test_write_new_without_hard_links_creates_the_file_exclusively(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_links(src: object, dst: object) -> None:
        raise OSError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(os, "link", no_links)
    path = tmp_path / "manifest.json"
    assert write_new(path, b"first") and path.read_bytes() == b"first"
    assert not write_new(path, b"second") and path.read_bytes() == b"first"
    assert [p.name for p in tmp_path.iterdir()] == ["manifest.json"]


def test_write_new_on_a_full_disk_names_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def full(self: Path, data: bytes) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Path, "write_bytes", full)
    with pytest.raises(OutputError, match="no space left") as err:
        write_new(tmp_path / "manifest.json", b"x")
    assert err.value.path == tmp_path / "manifest.json" and list(tmp_path.iterdir()) == []


def _umask() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return umask
