"""A fingerprint of dermseg's behaviour, to prove that a refactoring changed none of it.

Runs the command line only (so it works across module moves) on a small synthetic dataset:
a seeded, deterministic CPU training run of a tiny model (its per-epoch losses and validation
scores), then ``predict`` (SHA-256 of every mask and probability map written) and ``evaluate``
(its official scores) with the checkpoint that run wrote. Run it before and after a change
and compare the two fingerprints:

    python benchmarks/behaviour_fingerprint.py --out /tmp/before.json
    ... change the code ...
    python benchmarks/behaviour_fingerprint.py --out /tmp/after.json
    python benchmarks/behaviour_fingerprint.py --compare /tmp/before.json /tmp/after.json

Losses and scores must agree to ``--tol`` (float noise), files byte for byte.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

TINY = [
    "data.size=96",
    "data.crop_size=96",
    "data.workers=0",
    "model.encoder_name=test_efficientnet",
    "model.encoder_weights=none",
    "model.decoder_channels=[32,16,16,8,8]",
    "model.aspp_rates=[1,2]",
    "train.epochs=3",
    "train.batch_size=4",
    "train.lr=0.003",
]


def dermseg(*args: str) -> None:
    env = os.environ | {"HF_HUB_OFFLINE": "1"}
    subprocess.run([sys.executable, "-m", "dermseg", *args], check=True, env=env, stdout=subprocess.DEVNULL)


def fingerprint(work: Path) -> dict[str, Any]:
    data, run, pred = work / "data", work / "run", work / "pred"
    from dermseg.data.synthetic import write_dataset  # data/ is the one wing no refactoring moves

    for split, n, start in (("training", 12, 0), ("validation", 4, 12), ("test", 4, 16)):
        write_dataset(data, n, size=128, seed=1, split=split, start_id=start)
    overrides = [a for o in TINY for a in ("--set", o)]
    dermseg("train", "--data", str(data), "--out", str(run), "--config", "demo", *overrides,
            "--seed", "0", "--deterministic")  # fmt: skip
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line]
    keep = ("train_loss", "val_loss", "jaccard", "best_jaccard")
    epochs = [{k: r[k] for k in keep if k in r} for r in records]
    ckpt = run / "checkpoints" / "best.safetensors"
    dermseg("predict", "--checkpoint", str(ckpt), str(data / "ISIC2018_Task1-2_Test_Input"), "--out", str(pred),
            "--probabilities")  # fmt: skip
    files = {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(pred.rglob("*")) if p.is_file()
    }
    dermseg("evaluate", "--pred", str(pred), "--gt", str(data / "ISIC2018_Task2_Test_GroundTruth"),
            "--json", str(work / "scores.json"))  # fmt: skip
    scores = json.loads((work / "scores.json").read_text())
    return {"epochs": epochs, "predict_files": files, "scores": scores}


def _numbers(value: Any, prefix: str = "") -> dict[str, float]:
    """Every number of a nested JSON value, by its path."""
    out: dict[str, float] = {}
    if isinstance(value, dict):
        for k, v in value.items():
            out |= _numbers(v, f"{prefix}.{k}")
    elif isinstance(value, list):
        for i, v in enumerate(value):
            out |= _numbers(v, f"{prefix}[{i}]")
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        out[prefix] = float(value)
    return out


def compare(a: dict[str, Any], b: dict[str, Any], tol: float) -> list[str]:
    """The differences between two fingerprints (empty: the same behaviour)."""
    problems = []
    na, nb = (
        _numbers({"epochs": a["epochs"], "scores": a["scores"]}),
        _numbers({"epochs": b["epochs"], "scores": b["scores"]}),
    )
    for key in sorted(set(na) | set(nb)):
        if key.endswith(("seconds", "_s")):
            continue
        x, y = na.get(key), nb.get(key)
        if x is None or y is None or abs(x - y) > tol * max(1.0, abs(x)):
            problems.append(f"{key}: {x} != {y}")
    for name in sorted(set(a["predict_files"]) | set(b["predict_files"])):
        if a["predict_files"].get(name) != b["predict_files"].get(name):
            problems.append(f"predict output {name} differs")
    return problems


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, help="write the fingerprint here")
    p.add_argument("--compare", nargs=2, type=Path, metavar=("BEFORE", "AFTER"))
    p.add_argument("--tol", type=float, default=1e-6, help="relative tolerance of losses and scores")
    args = p.parse_args()
    if args.compare:
        a, b = (json.loads(f.read_text()) for f in args.compare)
        problems = compare(a, b, args.tol)
        print(
            "\n".join(problems)
            or f"same behaviour ({len(a['predict_files'])} files, {len(a['epochs'])} epochs)"
        )
        sys.exit(1 if problems else 0)
    if not args.out:
        p.error("--out or --compare is needed")
    with tempfile.TemporaryDirectory() as tmp:
        result = fingerprint(Path(tmp))
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"{args.out}: {len(result['epochs'])} epochs, {len(result['predict_files'])} files")


if __name__ == "__main__":
    main()
