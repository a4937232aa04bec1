"""dermseg's UNetASPP against smp's Unet with the same encoder, side by side in one run.

For each model: training images/s and inference images/s on in-memory batches
(the model alone, no data loading), then the official ISIC 2018 Task 2 Jaccard
reached on held-out synthetic images after training both with the same data,
config and wall-time budget. Results go to benchmarks/results/<tag>.json and to
a section of BENCHMARKS.md named after the tag.

    python benchmarks/compare_models.py --encoder tf_efficientnet_lite0 --size 192 --minutes 3
    python benchmarks/compare_models.py --device cuda --encoder inception_v3 --size 512 --minutes 3
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import torch
from bench_md import replace_section  # benchmarks/bench_md.py, beside this script

from dermseg.config import load_config, resolve_config_path
from dermseg.data.layout import discover
from dermseg.data.synthetic import write_dataset
from dermseg.demo import score_segmenter
from dermseg.inference.segmenter import Segmenter
from dermseg.training.loop import train
from dermseg.training.setup import amp_dtype, build_model

ROOT = Path(__file__).resolve().parents[1]
ARCHS = ("unet_aspp", "smp_unet")


def machine() -> str:
    if torch.cuda.is_available():
        return f"{torch.cuda.get_device_name(0)} (torch {torch.__version__})"
    cpu = platform.processor() or platform.machine()
    return f"CPU {cpu}, {os.cpu_count()} cores (torch {torch.__version__})"


def throughput(
    model: torch.nn.Module, size: int, batch: int, device: torch.device, dtype, steps: int
) -> dict:
    """Training and inference images/s of the model alone on random in-memory batches."""
    x = torch.randn(batch, 3, size, size, device=device)
    y = (torch.rand(batch, 5, size, size, device=device) > 0.9).float()
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()

    def train_step() -> None:
        with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            out = model(x)
        loss = torch.nn.functional.binary_cross_entropy_with_logits(out.float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    model.train()
    for _ in range(2):
        train_step()
    sync()
    t = time.perf_counter()
    for _ in range(steps):
        train_step()
    sync()
    train_ips = steps * batch / (time.perf_counter() - t)
    model.eval()
    with torch.no_grad(), torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
        for _ in range(2):
            model(x)
        sync()
        t = time.perf_counter()
        for _ in range(steps):
            model(x)
        sync()
    infer_ips = steps * batch / (time.perf_counter() - t)
    return {"train_images_per_s": train_ips, "infer_images_per_s": infer_ips}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cpu")
    p.add_argument("--encoder", default="tf_efficientnet_lite0")
    p.add_argument("--weights", default="imagenet", help="encoder weights for both models")
    p.add_argument("--size", type=int, default=192, help="training/inference side in pixels")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--steps", type=int, default=10, help="timed steps of the throughput measurement")
    p.add_argument("--minutes", type=float, default=3.0, help="training budget per model")
    p.add_argument("--n-train", type=int, default=240)
    p.add_argument("--image-size", type=int, default=256, help="synthetic image side")
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--work", type=Path, default=Path("/tmp/dermseg_bench"))
    p.add_argument("--tag", default=None, help="name of the results (default: device-encoder-size)")
    p.add_argument("--no-train", action="store_true", help="throughput only: skip the training/accuracy part")
    args = p.parse_args()

    device = torch.device(args.device)
    torch.set_flush_denormal(True)  # as dermseg's trainer does
    tag = args.tag or f"compare-{device.type}-{args.encoder}-{args.size}" + (
        "-speed" if args.no_train else ""
    )
    data = args.work / f"data-{args.n_train}-{args.image_size}"
    if not (data / "ISIC2018_Task1-2_Test_Input").is_dir():
        held = max(4, args.n_train // 6)
        write_dataset(data, args.n_train, size=args.image_size, seed=0, split="training")
        write_dataset(data, held, size=args.image_size, seed=0, split="validation", start_id=args.n_train)
        write_dataset(data, held, size=args.image_size, seed=0, split="test", start_id=args.n_train + held)
    test = discover(data).splits["test"].samples
    args.minutes = 0.0 if args.no_train else args.minutes

    rows = []
    for arch in ARCHS:
        crop = args.size if args.size <= args.image_size else args.image_size
        cfg = load_config(
            resolve_config_path("demo"),
            [
                f"model.arch={arch}",
                f"model.encoder_name={args.encoder}",
                f"model.encoder_weights={args.weights}",
                f"data.size={max(args.size, crop)}",
                f"data.crop_size={crop}",
                f"data.workers={args.workers}",
                f"train.batch_size={args.batch}",
                f"train.max_minutes={args.minutes}",
                "train.epochs=1000",
            ],
        )
        dtype = amp_dtype(cfg, device)
        torch.manual_seed(0)
        model = build_model(cfg).to(device)
        params = sum(p.numel() for p in model.parameters())
        speed = throughput(model, args.size, args.batch, device, dtype, args.steps)
        del model
        if args.no_train:
            rows.append({"arch": arch, "encoder": args.encoder, "params_m": params / 1e6, **speed})
            print(json.dumps(rows[-1]))
            continue
        run = args.work / f"run-{tag}-{arch}"
        t = time.perf_counter()
        result = train(cfg, data, run, device=args.device) if not (run / "checkpoints").exists() else None
        wall = time.perf_counter() - t
        seg = Segmenter.from_checkpoint(run / "checkpoints" / "best.safetensors", device=args.device)
        scores = score_segmenter(seg, test)
        rows.append(
            {
                "arch": arch,
                "encoder": args.encoder,
                "params_m": params / 1e6,
                **speed,
                "epochs": (result or {}).get("epoch", -1) + 1,
                "train_wall_s": wall,
                "official_jaccard_test": scores["overall"],
                "jaccard_per_attribute": {k: v["jaccard"] for k, v in scores.items() if isinstance(v, dict)},
            }
        )
        print(json.dumps(rows[-1]))

    record = {
        "tag": tag,
        "machine": machine(),
        "date": time.strftime("%Y-%m-%d"),
        "args": vars(args) | {"work": str(args.work)},
        "test_images": len(test),
        "rows": rows,
    }
    (ROOT / "benchmarks" / "results").mkdir(parents=True, exist_ok=True)
    (ROOT / "benchmarks" / "results" / f"{tag}.json").write_text(json.dumps(record, indent=2) + "\n")
    write_section(record)


def write_section(record: dict) -> None:
    """Replace (or add) this tag's section of BENCHMARKS.md."""
    a = record["args"]
    lines = [
        f"<!-- {record['tag']} -->",
        f"### UNetASPP vs smp Unet, {a['encoder']} encoder ({a['weights']} weights), {a['size']} px",
        "",
        f"Machine: {record['machine']}; {record['date']}. Throughput: batch {a['batch']}, "
        "model alone on random in-memory batches. "
        f"Accuracy: both trained {a['minutes']:g} min on the same {a['n_train']} synthetic "
        f"images (demo config), official Jaccard on {record['test_images']} held-out synthetic test images.",
        "",
        "| model | params (M) | train img/s | inference img/s | epochs in budget "
        "| official Jaccard (synthetic test) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for r in record["rows"]:
        lines.append(
            f"| {r['arch']} | {r['params_m']:.1f} | {r['train_images_per_s']:.1f} "
            f"| {r['infer_images_per_s']:.1f} "
            + (f"| {r['epochs']} | {r['official_jaccard_test']:.4f} |" if "epochs" in r else "| - | - |")
        )
    lines += [
        "",
        f"Command: `python benchmarks/compare_models.py --device {a['device']} --encoder {a['encoder']} "
        f"--size {a['size']} --minutes {a['minutes']:g}`",
        f"<!-- /{record['tag']} -->",
    ]
    replace_section(record["tag"], lines)


if __name__ == "__main__":
    main()
