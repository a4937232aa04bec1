"""Reproducible runs: seeding, deterministic kernels, RNG state capture and run provenance.

A run directory records what produced it (:func:`provenance`): the dermseg, PyTorch,
timm and Python versions, the git commit of the dermseg source when it is a checkout,
the device, the command line, and a hash of the data manifest (every image and mask
file's relative path and size), so two runs can be compared knowing whether they saw
the same data.
"""

from __future__ import annotations

import hashlib
import os
import platform
import random
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dermseg._version import __version__


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and PyTorch (all devices)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def set_deterministic(enabled: bool) -> None:
    """Ask PyTorch for deterministic kernels (slower on GPU).

    On CPU, a run with the same seed, data and thread count is then bit-identical. On CUDA a
    few kernels have no deterministic version (bilinear upsampling's backward, used by the
    decoder): they warn instead of stopping the run, and stay nondeterministic.
    """
    if enabled:
        # cuBLAS needs a fixed workspace to be deterministic; must be set before its first use.
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(enabled, warn_only=True)
    torch.backends.cudnn.deterministic = enabled
    torch.backends.cudnn.benchmark = not enabled


def get_rng_state() -> dict[str, Any]:
    """All global RNG states as plain data (loadable with ``torch.load(weights_only=True)``)."""
    np_state = np.random.get_state()
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": [np_state[0], torch.from_numpy(np_state[1].copy()), *np_state[2:]],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`get_rng_state` captured."""
    version, internal, gauss_next = state["python"]
    random.setstate((version, tuple(internal), gauss_next))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy(), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def data_manifest_hash(root: str | Path, files: list[Path]) -> str:
    """SHA-256 over the sorted ``relative/path<TAB>size`` lines of ``files`` under ``root``.

    Content is not read (a 10 GB dataset hashes in milliseconds); a renamed, added,
    removed or re-encoded file changes the hash.
    """
    root = Path(root)
    lines = []
    for f in files:
        try:
            rel = f.relative_to(root).as_posix()
        except ValueError:
            rel = f.as_posix()
        lines.append(f"{rel}\t{f.stat().st_size}")
    digest = hashlib.sha256()
    for line in sorted(lines):
        digest.update(line.encode("utf-8", "surrogateescape") + b"\n")
    return digest.hexdigest()


def git_commit(path: str | Path | None = None) -> dict[str, Any] | None:
    """``{"commit", "dirty"}`` of the git checkout holding ``path`` (dermseg's source by default)."""
    where = Path(path) if path is not None else Path(__file__).resolve().parent
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=where, capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        status = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=where,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return {"commit": commit, "dirty": bool(status.strip())}


def versions() -> dict[str, str]:
    """Versions of dermseg and the libraries that shape its numbers."""
    import timm

    found = {
        "dermseg": __version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "timm": timm.__version__,
        "numpy": np.__version__,
    }
    for name in ("albumentations", "cv2", "segmentation_models_pytorch", "onnxruntime"):
        module = sys.modules.get(name)
        if module is not None and hasattr(module, "__version__"):
            found[name] = str(module.__version__)
    return found


def provenance(data_root: str | Path, data_files: list[Path], device: torch.device) -> dict[str, Any]:
    """What produced a run: versions, git commit, device, command, data manifest hash, time."""
    device_name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor()
    return {
        "versions": versions(),
        "git": git_commit(),
        "device": {
            "type": device.type,
            "name": device_name or platform.machine(),
            "threads": torch.get_num_threads(),
        },
        "platform": platform.platform(),
        "command": sys.argv,
        "data": {
            "root": str(Path(data_root).resolve()),
            "files": len(data_files),
            "manifest_sha256": data_manifest_hash(data_root, data_files),
        },
        "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
