"""Inference speed on the CPU: PyTorch against ONNX Runtime on the same network, in one run.

For each encoder, builds UNetASPP with the default decoder and ASPP (random init: speed does not
depend on the weights), exports it with :func:`dermseg.inference.export.export_model`, and times the
network alone (normalised ``(1, 3, S, S)`` input -> ``(1, 5, S, S)`` probabilities): PyTorch
eager under ``torch.no_grad`` and an ONNX Runtime CPU session, both with their default thread
counts, median of ``--repeats`` calls after ``--warmup`` calls. Checks that both give the same
probabilities, and writes the ``onnx-speed`` section of BENCHMARKS.md.

    python benchmarks/onnx_speed.py                         # 512 px, lite0 and inception_v3
    python benchmarks/onnx_speed.py --size 256 --repeats 5
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
from bench_md import replace_section  # benchmarks/bench_md.py, beside this script

from dermseg.inference.export import export_model
from dermseg.models.factory import create_model

TAG = "onnx-speed"
META = {
    "encoding": "multilabel",
    "input_size": 512,
    "normalization": {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]},
}


def machine() -> str:
    """CPU model and the cores this process may use."""
    model = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return f"{model}, {cores} cores"


def median_seconds(fn: Callable[[], object], warmup: int, repeats: int) -> float:
    """Median wall time of ``fn`` over ``repeats`` calls after ``warmup`` untimed calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def measure(encoder: str, size: int, warmup: int, repeats: int) -> dict[str, float]:
    """Images/s of PyTorch and ONNX Runtime for UNetASPP on ``encoder`` at ``size`` px, batch 1."""
    torch.manual_seed(0)
    model = create_model("unet_aspp", encoder_name=encoder, encoder_weights="none")
    # BatchNorm statistics of one batch, as a trained model has: with the default running
    # statistics random-init activations grow by orders of magnitude and the diff means little.
    for module in model.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.momentum = None
    with torch.no_grad():
        model.train()(torch.randn(2, 3, 256, 256))
    model.eval()
    x = torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(0))
    with tempfile.TemporaryDirectory() as tmp:
        path = export_model(model, META, Path(tmp) / "m.onnx")
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])

    def run_torch() -> np.ndarray:
        with torch.no_grad():
            return torch.sigmoid(model(x)).numpy()

    def run_ort() -> np.ndarray:
        return session.run(["probabilities"], {"image": x.numpy()})[0]

    diff = float(np.abs(run_torch() - run_ort()).max())
    t_torch = median_seconds(run_torch, warmup, repeats)
    t_ort = median_seconds(run_ort, warmup, repeats)
    return {"torch_ips": 1 / t_torch, "ort_ips": 1 / t_ort, "max_abs_diff": diff}


def main() -> None:
    """Measure and write the BENCHMARKS.md section."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--encoders", nargs="+", default=["tf_efficientnet_lite0", "inception_v3"])
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()
    torch.set_flush_denormal(True)  # as Segmenter does
    rows = []
    raw = []
    for encoder in args.encoders:
        r = measure(encoder, args.size, args.warmup, args.repeats)
        raw.append({"encoder": encoder, "size": args.size, **r})
        print(f"{encoder}: torch {r['torch_ips']:.2f} img/s, onnxruntime {r['ort_ips']:.2f} img/s")
        rows.append(
            f"| {encoder} | {r['torch_ips']:.2f} | {r['ort_ips']:.2f} | "
            f"{r['ort_ips'] / r['torch_ips']:.2f}x | {r['max_abs_diff']:.1e} |"
        )
    lines = [
        f"<!-- {TAG} -->",
        "## ONNX Runtime vs PyTorch on the CPU (`benchmarks/onnx_speed.py`)",
        "",
        "UNetASPP (default decoder and ASPP, random init, BatchNorm statistics from one random batch), "
        "network only: normalised "
        f"1 x 3 x {args.size} x {args.size} input -> probabilities, batch 1, median of "
        f"{args.repeats} calls after {args.warmup} warm-up calls, default thread counts. "
        f"{machine()}; torch {torch.__version__}, onnxruntime {ort.__version__}; "
        f"{datetime.date.today().isoformat()}. The machine's cores were shared with other work, "
        "so absolute numbers are noisy; both backends were timed in the same run.",
        "",
        "| encoder | torch img/s | onnxruntime img/s | speed-up | max abs diff |",
        "|---|---:|---:|---:|---:|",
        *rows,
        f"<!-- /{TAG} -->",
    ]
    replace_section(TAG, lines)
    results = Path(__file__).resolve().parent / "results"
    results.mkdir(exist_ok=True)
    record = {"machine": machine(), "date": datetime.date.today().isoformat(), "rows": raw}
    (results / "onnx_speed.json").write_text(json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    main()
