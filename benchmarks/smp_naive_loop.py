"""Task 2 masks from an smp ``Unet`` the way a researcher would write it: plain torch, one image at a time.

The baseline of ``benchmarks/smp_naive.py``. dermseg only loads the weights (its checkpoint
loader rebuilds the smp model and fills it; the ``smp.Unet`` inside dermseg's padding wrapper is
taken out and used bare); the loop below calls no dermseg code. For each image, in name order:
Pillow open + convert RGB, numpy, resize the whole image so its short side is the checkpoint's
working size (cv2 ``INTER_AREA``), normalise with the checkpoint's mean/std, pad bottom/right
(reflect) to a multiple of 32 because smp refuses other sizes, forward in torch (default threads,
NCHW contiguous input, ``torch.no_grad``), crop, sigmoid, ``F.interpolate`` bilinear back to the
image size, threshold (``p > t``, the checkpoint's thresholds), five 0/255 PNGs written with
Pillow's default settings as ``ISIC_<id>_attribute_<name>.png``. No field-of-view crop, no
post-processing beyond the thresholds, no pipelining.

Prints one JSON line: ``{"images", "load_s", "loop_s", "first_image_s", "ignored_postprocess"}``
(``loop_s`` times the whole loop after the model is loaded; ``first_image_s`` is its first image).

    python benchmarks/smp_naive_loop.py --checkpoint best.safetensors IMAGES... --out DIR
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import cv2
import numpy as np
import segmentation_models_pytorch as smp
import torch
import torch.nn.functional as F
from PIL import Image

from dermseg.models.checkpoint import load_checkpoint

SUFFIXES = (".jpg", ".jpeg", ".png")


def load_unet(path: Path) -> tuple[torch.nn.Module, dict]:
    """The bare ``smp.Unet`` of a dermseg ``smp_unet`` checkpoint (eval mode) and its description."""
    ckpt = load_checkpoint(path)
    if ckpt.meta["arch"] != "smp_unet":
        raise SystemExit(f"{path}: arch {ckpt.meta['arch']!r}, this loop is for smp_unet checkpoints")
    net = ckpt.build_model().model  # dermseg's SmpSegmenter wraps the smp model as .model
    if not isinstance(net, smp.Unet):
        raise SystemExit(f"{path}: expected an smp.Unet inside, got {type(net).__name__}")
    return net.eval(), ckpt.meta


def image_paths(inputs: list[Path]) -> list[Path]:
    paths: list[Path] = []
    for p in inputs:
        paths += sorted(q for q in p.iterdir() if q.suffix.lower() in SUFFIXES) if p.is_dir() else [p]
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, required=True)
    parser.add_argument("inputs", type=Path, nargs="+", help="images or folders of images")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()

    started = time.perf_counter()
    net, meta = load_unet(args.checkpoint)
    post = meta.get("postprocess", {"thresholds": meta.get("thresholds", [0.5] * len(meta["attributes"]))})
    thresholds = post["thresholds"]
    ignored = {k: v for k, v in post.items() if k != "thresholds" and any(v)}
    names = meta["attributes"]
    size = int(meta["input_size"])
    mean = np.asarray(meta["normalization"]["mean"], np.float32)
    std = np.asarray(meta["normalization"]["std"], np.float32)
    paths = image_paths(args.inputs)
    args.out.mkdir(parents=True, exist_ok=True)
    load_s = time.perf_counter() - started

    # ---- the naive loop: nothing from dermseg below this line ----
    start = time.perf_counter()
    first_image_s = 0.0
    with torch.no_grad():
        for i, path in enumerate(paths):
            image = np.asarray(Image.open(path).convert("RGB"))
            h, w = image.shape[:2]
            scale = size / min(h, w)
            small = cv2.resize(image, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA)
            x = (small.astype(np.float32) / 255.0 - mean) / std
            # NCHW and contiguous: a bare permute of the HWC array would carry channels-last strides
            x = torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1)))[None]
            sh, sw = x.shape[-2:]
            x = F.pad(x, (0, -sw % 32, 0, -sh % 32), mode="reflect")  # smp wants sides divisible by 32
            probs = torch.sigmoid(net(x)[..., :sh, :sw])
            probs = F.interpolate(probs, size=(h, w), mode="bilinear", align_corners=False)[0].numpy()
            for k, name in enumerate(names):
                mask = (probs[k] > thresholds[k]).astype(np.uint8) * 255
                Image.fromarray(mask).save(args.out / f"{path.stem}_attribute_{name}.png")
            if i == 0:
                first_image_s = time.perf_counter() - start
    loop_s = time.perf_counter() - start
    print(
        json.dumps(
            {
                "images": len(paths),
                "load_s": load_s,
                "loop_s": loop_s,
                "first_image_s": first_image_s,
                "ignored_postprocess": ignored,
            }
        )
    )


if __name__ == "__main__":
    main()
