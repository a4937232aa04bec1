"""GPU numbers in one prepared run: training and prediction speed of UNetASPP on one GPU.

Measures, for each encoder (default ``inception_v3`` and ``resnet101``, random init: no weight
hub is reachable on the GPU machines), at 512 px crops, batch 16, bf16 autocast + channels_last:

1. ``model alone``: training images/s on random in-memory batches (forward, BCE, backward, AdamW
   step), with and without ``torch.compile`` (its compile time reported apart);
2. ``real loop``: images/s of dermseg's own training loop (``dermseg.training.loop.train``) fed from the
   prepared cache by the DataLoader (``data.workers`` processes, the isic2018 recipe's
   augmentation), steady state after the first steps; its ratio to (1) says whether the data
   pipeline keeps the GPU fed;
3. ``predict``: images/s of ``Segmenter`` on 1024x768 JPEG files, end to end (decode, background
   crop, resize, forward, upsample to the image size, thresholds), and of the network alone.

Everything goes to ``OUT/gpu_numbers.json`` as it is measured (so a run cut short still returns
what it had). ``--write-md JSON`` turns such a file into the BENCHMARKS.md section on any machine.

    python benchmarks/gpu_numbers.py --out /tmp/gpu            # on the GPU machine
    python benchmarks/gpu_numbers.py --write-md results/gpu_numbers.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def model_alone(
    model: torch.nn.Module, size: int, batch: int, device: torch.device, steps: int, compile_: bool
) -> dict[str, float]:
    """Training and inference images/s of ``model`` on random in-memory ``(batch, 3, size, size)`` inputs."""
    dtype = torch.bfloat16 if device.type == "cuda" else None
    x = torch.randn(batch, 3, size, size, device=device)
    y = (torch.rand(batch, 5, size, size, device=device) > 0.9).float()
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    run = torch.compile(model) if compile_ else model
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)

    def logits(out: Any) -> torch.Tensor:
        return out["masks"] if isinstance(out, dict) else out

    def step() -> None:
        with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            out = logits(run(x))
        loss = torch.nn.functional.binary_cross_entropy_with_logits(out.float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    model.train()
    t = time.perf_counter()
    step()  # the first step compiles when compile_ is set
    _sync(device)
    first = time.perf_counter() - t
    for _ in range(2):
        step()
    _sync(device)
    t = time.perf_counter()
    for _ in range(steps):
        step()
    _sync(device)
    train_ips = steps * batch / (time.perf_counter() - t)
    model.eval()
    with torch.no_grad(), torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
        for _ in range(3):
            run(x)
        _sync(device)
        t = time.perf_counter()
        for _ in range(steps):
            run(x)
        _sync(device)
    infer_ips = steps * batch / (time.perf_counter() - t)
    return {"train_images_per_s": train_ips, "infer_images_per_s": infer_ips, "first_step_s": first}


class StepTimes:
    """Training-loop callbacks recording when each step ended."""

    def __init__(self) -> None:
        self.times: list[float] = []

    def on_epoch_start(self, epoch: int, steps: int) -> None:
        pass

    def on_step(self, loss: float, images_per_s: float) -> None:
        self.times.append(time.perf_counter())

    def on_epoch_end(self, record: dict[str, Any]) -> None:
        pass


def real_loop(cfg_overrides: list[str], data: Path, run: Path, device: str, batch: int, skip: int) -> dict:
    """Steady-state images/s of dermseg's training loop fed from the prepared cache."""
    from dermseg.config import load_config, resolve_config_path
    from dermseg.training.loop import train

    cfg = load_config(resolve_config_path("isic2018"), cfg_overrides)
    times = StepTimes()
    t = time.perf_counter()
    train(cfg, data, run, callbacks=times, device=device)
    wall = time.perf_counter() - t
    steps = len(times.times)
    if steps <= skip + 1:
        return {"steps": steps, "wall_s": wall, "train_images_per_s": None}
    span = times.times[-1] - times.times[skip]
    return {
        "steps": steps,
        "wall_s": wall,
        "train_images_per_s": (steps - 1 - skip) * batch / span,
        "skipped_warmup_steps": skip,
    }


def predict_speed(checkpoint: Path, files: list[Path], device: str) -> dict[str, float]:
    """End-to-end images/s of Segmenter on image files (decode to thresholded masks at image size)."""
    from dermseg.inference.segmenter import Segmenter

    seg = Segmenter.from_checkpoint(checkpoint, device=device, tta=False)
    for f in files[:3]:
        seg(f)
    _sync(torch.device(device))
    t = time.perf_counter()
    for f in files:
        seg(f)
    _sync(torch.device(device))
    return {"images": len(files), "images_per_s": len(files) / (time.perf_counter() - t)}


def machine() -> dict[str, str]:
    out = {"python": platform.python_version(), "torch": torch.__version__}
    try:
        import timm

        out["timm"] = timm.__version__
    except ImportError:
        pass
    if torch.cuda.is_available():
        out["gpu"] = torch.cuda.get_device_name(0)
    out["cpu_count"] = str(os.cpu_count())
    return out


def measure(args: argparse.Namespace) -> None:
    from dermseg.config import load_config, resolve_config_path
    from dermseg.data.cache import prepare_cache
    from dermseg.data.synthetic import SynthConfig, write_dataset
    from dermseg.training.setup import build_model

    started = time.perf_counter()
    args.out.mkdir(parents=True, exist_ok=True)
    record: dict[str, Any] = {"machine": machine(), "date": time.strftime("%Y-%m-%d"), "args": {}, "rows": []}
    record["args"] = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}

    def save() -> None:
        (args.out / "gpu_numbers.json").write_text(json.dumps(record, indent=2) + "\n")
        print(json.dumps(record["rows"][-1] if record["rows"] else record["machine"]), flush=True)

    def left() -> float:
        return args.budget_s - (time.perf_counter() - started)

    save()
    device = torch.device(args.device)
    size, batch = args.size, args.batch
    data, cache, work = args.work / "data", args.work / "cache", args.work
    t = time.perf_counter()
    four_by_three = SynthConfig(height=args.image_size * 3 // 4)
    # Sample k depends only on (seed, split, k), so chunks written in parallel give the same files.
    chunk = -(-args.n_train // (os.cpu_count() or 1))
    with ProcessPoolExecutor() as pool:
        jobs = [
            pool.submit(
                write_dataset,
                data,
                min(chunk, args.n_train - s),
                args.image_size,
                0,
                "training",
                s,
                None,
                four_by_three,
            )
            for s in range(0, args.n_train, chunk)
        ]
        for job in jobs:
            job.result()
    write_dataset(data, 16, size=args.image_size, seed=0, split="validation", start_id=args.n_train)
    record["data"] = {"synth_s": time.perf_counter() - t, "n_train": args.n_train}
    t = time.perf_counter()
    prepare_cache(data, cache, 640, workers=os.cpu_count())
    record["data"]["prepare_s"] = time.perf_counter() - t

    for encoder in args.encoders:
        base = [
            f"model.encoder_name={encoder}",
            "model.encoder_weights=none",
            f"train.batch_size={batch}",
            f"data.crop_size={size}",
        ]
        cfg = load_config(resolve_config_path("isic2018"), base)
        torch.manual_seed(0)
        model = build_model(cfg).to(device)
        row = {"encoder": encoder, "params_m": sum(p.numel() for p in model.parameters()) / 1e6}
        row["model_alone"] = model_alone(model, size, batch, device, args.steps, compile_=False)
        record["rows"].append(row)
        save()
        del model
        run = work / f"run-{encoder}"
        loop_cfg = base + [
            f"data.cache={cache}",
            f"data.workers={args.workers}",
            f"train.max_minutes={args.loop_minutes}",
            "train.epochs=1000",
            "train.eval_every=1000",
            "train.checkpoint_every=0",
            "predict.tta=false",
        ]
        try:
            row["real_loop"] = real_loop(loop_cfg, data, run, args.device, batch, skip=10)
            row["real_loop"]["workers"] = args.workers
        except Exception as exc:  # a failure of the loop is a result too; go on with the rest
            row["real_loop"] = {"error": f"{type(exc).__name__}: {str(exc)[:300]}"}
        save()
        files = sorted((data / "ISIC2018_Task1-2_Training_Input").glob("*.jpg"))[: args.predict_images]
        try:
            row["predict"] = predict_speed(run / "checkpoints" / "best.safetensors", files, args.device)
        except Exception as exc:
            row["predict"] = {"error": f"{type(exc).__name__}: {str(exc)[:300]}"}
        save()

    for row in record["rows"]:
        if left() < args.compile_reserve_s:
            row["model_alone_compiled"] = {"skipped": f"less than {args.compile_reserve_s} s of budget left"}
            save()
            continue
        cfg = load_config(
            resolve_config_path("isic2018"),
            [f"model.encoder_name={row['encoder']}", "model.encoder_weights=none"],
        )
        torch.manual_seed(0)
        model = build_model(cfg).to(device)
        try:
            row["model_alone_compiled"] = model_alone(model, size, batch, device, args.steps, compile_=True)
        except Exception as exc:  # a compile failure is a result too
            row["model_alone_compiled"] = {"error": f"{type(exc).__name__}: {str(exc)[:300]}"}
        save()
        del model
    record["total_s"] = time.perf_counter() - started
    save()


def _fmt(value: Any, spec: str = ".0f") -> str:
    return format(value, spec) if isinstance(value, (int, float)) else "-"


def write_md(path: Path) -> None:
    """Write the BENCHMARKS.md section of a gpu_numbers.json file."""
    import sys

    sys.path.insert(0, str(Path(__file__).parent))
    from bench_md import replace_section

    record = json.loads(path.read_text())
    m, a = record["machine"], record["args"]
    lines = [
        "<!-- gpu-numbers -->",
        f"### GPU: training and prediction speed on {m.get('gpu', 'no GPU')}",
        "",
        f"Machine: {m.get('gpu', 'no GPU')}, {m['cpu_count']} CPU cores, torch {m['torch']}, "
        f"timm {m.get('timm', '?')}, Python {m['python']}; {record['date']}. UNetASPP (isic2018 recipe: "
        f"ASPP 2/3/4, presence head, random-init encoder), {a['size']} px crops, batch {a['batch']}, "
        "bf16 autocast + channels_last. *Model alone*: random in-memory batches. *Real loop*: "
        f"`dermseg.training.loop.train` fed by {a['workers']} DataLoader workers from the prepared cache "
        f"({a['n_train']} synthetic {a['image_size']}x{int(a['image_size']) * 3 // 4} images cached at "
        "640 px, the recipe's flips, rotations and colour jitter; no lesion masks, so uniform crops; one epoch is only about 11 steps here), steady state after 10 steps, epoch ends included. "
        f"*Predict*: `Segmenter` on {a['predict_images']} {a['image_size']}x{int(a['image_size']) * 3 // 4} "
        "JPEG files end to end (decode, background crop, resize, forward, upsample, thresholds), one "
        "image at a time, no TTA.",
        "",
        "| encoder | params (M) | train img/s, model alone | train img/s, compiled (compile s) "
        "| train img/s, real loop (fed?) | inference img/s, model alone | predict img/s, end to end |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in record["rows"]:
        alone = r["model_alone"]
        comp = r.get("model_alone_compiled", {})
        loop = r.get("real_loop", {})
        comp_text = (
            f"{_fmt(comp.get('train_images_per_s'))} ({_fmt(comp.get('first_step_s'))} s)"
            if "train_images_per_s" in comp
            else comp.get("skipped", comp.get("error", "not run"))
        )
        fed = loop.get("train_images_per_s")
        fed_text = f"{_fmt(fed)} ({fed / alone['train_images_per_s']:.0%})" if fed else "-"
        lines.append(
            f"| {r['encoder']} | {r['params_m']:.1f} | {_fmt(alone['train_images_per_s'])} | {comp_text} "
            f"| {fed_text} | {_fmt(alone['infer_images_per_s'])} "
            f"| {_fmt(r.get('predict', {}).get('images_per_s'), '.1f')} |"
        )
    lines += [
        "",
        "Command (on the GPU machine): `bash benchmarks/gpu_compare.sh OUT`, which runs "
        "`python benchmarks/gpu_numbers.py --out OUT`; the section is written by "
        "`python benchmarks/gpu_numbers.py --write-md benchmarks/results/gpu_numbers.json`.",
        "<!-- /gpu-numbers -->",
    ]
    replace_section("gpu-numbers", lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=Path("/tmp/gpu_numbers"))
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--encoders", nargs="+", default=["inception_v3", "resnet101"])
    p.add_argument("--size", type=int, default=512)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--steps", type=int, default=20, help="timed steps of the model-alone measurement")
    p.add_argument("--n-train", type=int, default=192)
    p.add_argument("--image-size", type=int, default=1024, help="synthetic image width (height = 3/4)")
    p.add_argument("--workers", type=int, default=12)
    p.add_argument("--loop-minutes", type=float, default=0.75)
    p.add_argument("--predict-images", type=int, default=48)
    p.add_argument(
        "--budget-s", type=float, default=420, help="whole-run budget; compile runs only within it"
    )
    p.add_argument("--compile-reserve-s", type=float, default=90)
    p.add_argument("--work", type=Path, default=Path("/tmp/dermseg_gpu"))
    p.add_argument("--write-md", type=Path, default=None, help="write BENCHMARKS.md from this JSON and exit")
    args = p.parse_args()
    if args.write_md:
        write_md(args.write_md)
        return
    measure(args)


if __name__ == "__main__":
    main()
