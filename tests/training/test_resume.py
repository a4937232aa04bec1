"""Crash safety: a run killed with SIGKILL mid-epoch and resumed ends bit-identical; NaN stops cleanly."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from dermseg.cli import main
from dermseg.config import load_config
from dermseg.models.checkpoint import load_train_state
from dermseg.training.loop import TrainingDiverged, train
from tests.conftest import TINY_TRAIN

# Deterministic, a mid-epoch state every step, 2 epochs of 3 steps, no threshold tuning (not weights).
RESUMABLE = [
    *TINY_TRAIN,
    "deterministic=true",
    "train.epochs=2",
    "train.checkpoint_every=1",
    "train.tune_thresholds=false",
    "augment.color_jitter=0.3",
]

# Trains in a child process; with KILL_AT set, the process SIGKILLs itself right after that step.
CHILD = """
import os, signal, sys
from dermseg.config import load_config
from dermseg.training.loop import train

class KillAt:
    def __init__(self, at):
        self.at, self.steps = at, 0
    def on_epoch_start(self, epoch, steps):
        pass
    def on_step(self, loss, images_per_s):
        self.steps += 1
        if self.steps == self.at:
            os.kill(os.getpid(), signal.SIGKILL)
    def on_epoch_end(self, record):
        pass

data, run, resume, kill_at = sys.argv[1], sys.argv[2], sys.argv[3] == "1", int(sys.argv[4])
cfg = load_config(None, sys.argv[5:])
train(cfg, data, run, resume=resume, callbacks=KillAt(kill_at), device="cpu")
"""


def _train_child(data: Path, run: Path, *, resume: bool = False, kill_at: int = 0) -> int:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "2"}
    args = [
        sys.executable,
        "-c",
        CHILD,
        str(data),
        str(run),
        "1" if resume else "0",
        str(kill_at),
        *RESUMABLE,
    ]
    return subprocess.run(args, env=env, timeout=600, capture_output=True).returncode


def _weights(run: Path) -> dict[str, torch.Tensor]:
    return load_file(str(run / "checkpoints" / "last.safetensors"))


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs POSIX signals")
def test_sigkill_mid_epoch_then_resume_is_bit_identical(synth_dataset: Path, tmp_path: Path) -> None:
    reference, killed = tmp_path / "reference", tmp_path / "killed"
    assert _train_child(synth_dataset, reference) == 0

    # step 5 is the second step of epoch 1: killed after it ran, before its state was saved
    assert _train_child(synth_dataset, killed, kill_at=5) == -signal.SIGKILL
    state = load_train_state(killed / "checkpoints" / "last_state.pt")
    assert (
        state["position"]["epoch"] == 1 and state["position"]["batch"] == 1 and state["position"]["step"] == 4
    )
    assert _train_child(synth_dataset, killed, resume=True) == 0

    a, b = _weights(reference), _weights(killed)
    assert a.keys() == b.keys()
    different = [k for k in a if not torch.equal(a[k], b[k])]
    assert not different, f"{len(different)} tensors differ, e.g. {different[:3]}"
    # the metrics file is rebuilt from the resumed state: one line per epoch, none lost or repeated
    lines = (killed / "metrics.jsonl").read_text().splitlines()
    assert lines and len(lines) == 2
    assert [ln.split('"step": ')[1].split(",")[0] for ln in lines] == ["3", "6"]


def test_a_different_seed_gives_different_weights(synth_dataset: Path, tmp_path: Path) -> None:
    # the bit-identity above must come from the resume, not from training ignoring its randomness
    runs = []
    for seed in (0, 1):
        cfg = load_config(
            None, [*TINY_TRAIN, "deterministic=true", f"seed={seed}", "train.tune_thresholds=false"]
        )
        train(cfg, synth_dataset, tmp_path / f"s{seed}", device="cpu")
        runs.append(_weights(tmp_path / f"s{seed}"))
    assert any(not torch.equal(runs[0][k], runs[1][k]) for k in runs[0])


def test_kill_while_writing_the_state_keeps_the_previous_one(
    synth_dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = tmp_path / "run"
    cfg = load_config(None, [*RESUMABLE, "train.epochs=1"])
    train(cfg, synth_dataset, run, device="cpu")
    path = run / "checkpoints" / "last_state.pt"
    before = path.read_bytes()

    def dies_half_way(obj: object, f: str | os.PathLike) -> None:
        Path(f).write_bytes(b"half a pickle")  # what a kill mid-write leaves in the temporary file
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", dies_half_way)
    with pytest.raises(KeyboardInterrupt):
        train(
            load_config(None, [*RESUMABLE, "train.epochs=2"]), synth_dataset, run, resume=True, device="cpu"
        )
    assert path.read_bytes() == before
    assert load_train_state(path)["position"]["step"] == 3


def test_nan_loss_stops_with_a_clear_message_and_keeps_the_last_good_state(
    synth_dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    import dermseg.training.setup as setup_module

    real_build = setup_module.build_loss

    def poisoned(*args: object, **kwargs: object) -> torch.nn.Module:
        loss = real_build(*args, **kwargs)
        calls = {"n": 0}

        def forward(*a: object, **k: object) -> torch.Tensor:
            calls["n"] += 1
            value = loss(*a, **k)
            return value * float("nan") if calls["n"] == 2 else value

        wrapper = torch.nn.Module()
        wrapper.forward = forward  # type: ignore[method-assign]
        return wrapper

    monkeypatch.setattr(setup_module, "build_loss", poisoned)
    run = tmp_path / "run"
    with pytest.raises(TrainingDiverged, match="loss is nan at epoch 0, step 1"):
        train(load_config(None, RESUMABLE), synth_dataset, run, device="cpu")
    state = load_train_state(run / "checkpoints" / "last_state.pt")
    assert state["position"]["step"] == 1  # the good step before the NaN
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())

    args = ["train", "--data", str(synth_dataset), "--out", str(tmp_path / "cli")]
    for item in RESUMABLE:
        args += ["--set", item]
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "loss is nan" in err[0] and "last good checkpoint is kept" in err[0]
