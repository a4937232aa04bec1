"""Start-up of the ``dermseg`` command line, and ``evaluate --pred --gt`` end to end vs the official scorer.

Every number is the wall time of a fresh process (``python -m dermseg ...``, with ``PYTHONPATH``
set to this checkout's ``src``, or to ``--before-src`` for the same commands on another tree):

* ``dermseg --help``;
* ``dermseg evaluate --pred --gt`` on N images x 5 attributes of synthetic Task 2 mask pairs
  (drawn as in ``benchmarks/eval_speed.py``), against the official scorer run the way a user
  runs it, ``python -c "... isic_challenge_scoring.task2.score(truth, pred) ..."`` (its package
  has no Task 2 command), and against its scoring alone (``evaluate_folders`` timed inside a
  fresh process, imports excluded; run in turn with ``evaluate``): the difference is what
  start-up (and printing) costs;
* ``python -X importtime -m dermseg <command>`` for the light commands (``--help``, ``evaluate``
  on Task 2 and on Task 1 folders, ``check``, ``split``, ``synth``) and for ``predict --help``:
  the total import time and which heavy libraries (torch, timm, smp, albumentations, cv2,
  onnxruntime) each one imports.

Writes benchmarks/results/startup.json and the ``startup`` section of BENCHMARKS.md.

    python benchmarks/startup.py                      # 300 images x 5 = 1500 mask pairs
    python benchmarks/startup.py --images 40 --repeats 1
    python benchmarks/startup.py --before-src /tmp/old/src   # the same commands on an older tree
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from bench_md import replace_section  # benchmarks/bench_md.py, beside this script
from eval_speed import DEFAULT_SIZES, machine, max_abs_diff, parse_sizes, write_pair

ROOT = Path(__file__).resolve().parents[1]
TAG = "startup"
HEAVY = ("torch", "timm", "segmentation_models_pytorch", "albumentations", "cv2", "onnxruntime")
OFFICIAL = (
    "import json, sys; from pathlib import Path; from isic_challenge_scoring import task2; "
    "print(json.dumps(task2.score(Path(sys.argv[1]), Path(sys.argv[2]))))"
)
#: ``evaluate_folders`` timed inside a fresh process, its imports excluded: the scoring alone.
SCORING_ONLY = (
    "import sys, time; from pathlib import Path; from dermseg.evaluation.folders import evaluate_folders; "
    "start = time.perf_counter(); evaluate_folders(Path(sys.argv[1]), Path(sys.argv[2])); "
    "print(time.perf_counter() - start)"
)


def _env(src: Path) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(src), "HF_HUB_OFFLINE": "1"}


def run_timed(cmd: list[str], env: dict[str, str], cwd: Path) -> tuple[float, subprocess.CompletedProcess]:
    """Wall time of one process, from start to exit; a failing command stops the benchmark."""
    start = time.perf_counter()
    done = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    return elapsed, done


def best_wall(repeats: int, cmd: list[str], env: dict[str, str], cwd: Path) -> float:
    return min(run_timed(cmd, env, cwd)[0] for _ in range(repeats))


def import_profile(args: list[str], env: dict[str, str], cwd: Path) -> dict:
    """``python -X importtime -m dermseg *args``: total import seconds and the heavy libraries loaded.

    The total sums the top-level (cumulative) entries, so each module counts once.
    """
    _, done = run_timed([sys.executable, "-X", "importtime", "-m", "dermseg", *args], env, cwd)
    total_us, modules = 0, set()
    for line in done.stderr.splitlines():
        if not line.startswith("import time:") or "self [us]" in line:
            continue
        _, cumulative, name = line.split("|")
        modules.add(name.strip())
        if not name.startswith("  "):  # one space: a top-level import, children included
            total_us += int(cumulative)
    return {
        "import_s": round(total_us / 1e6, 3),
        "modules": len(modules),
        "heavy": [m for m in HEAVY if m in modules],
    }


def light_commands(work: Path, pred: Path, truth: Path) -> dict[str, list[str]]:
    """The commands profiled with ``-X importtime``, on small folders made under ``work``."""
    syn, task1 = work / "syn", work / "syn" / "ISIC2018_Task1_Training_GroundTruth"
    return {
        "--help": ["--help"],
        "evaluate (Task 2 folders)": ["evaluate", "--pred", str(pred), "--gt", str(truth)],
        "evaluate (Task 1 folders)": ["evaluate", "--pred", str(task1), "--gt", str(task1)],
        "check": ["check", str(syn)],
        "split": ["split", str(syn), "--out", str(work / "split.json")],
        "synth": ["synth", str(work / "syn2"), "--n", "2", "--size", "64", "--overwrite"],
        "predict --help": ["predict", "--help"],
    }


def measure(src: Path, work: Path, pred: Path, truth: Path, repeats: int) -> dict:
    """Every dermseg number of one source tree.

    ``evaluate`` end to end and its scoring alone alternate, so that both see the same load.
    """
    env = _env(src)
    dermseg = [sys.executable, "-m", "dermseg"]
    json_out = work / f"scores-{src.parent.name}.json"
    evaluate_cmd = [*dermseg, "evaluate", "--pred", str(pred), "--gt", str(truth), "--json", str(json_out)]
    scoring_cmd = [sys.executable, "-c", SCORING_ONLY, str(pred), str(truth)]
    evaluate_s, scoring_s = [], []
    for _ in range(repeats):
        evaluate_s.append(run_timed(evaluate_cmd, env, work)[0])
        scoring_s.append(float(run_timed(scoring_cmd, env, work)[1].stdout))
    return {
        "help_s": round(best_wall(repeats, [*dermseg, "--help"], env, work), 3),
        "evaluate_s": round(min(evaluate_s), 3),
        "scoring_s": round(min(scoring_s), 3),
        # each run minus the scoring run after it (the same load, or near): the median of these
        "startup_s": round(statistics.median(e - c for e, c in zip(evaluate_s, scoring_s, strict=True)), 3),
        "scores": json.loads(json_out.read_text()),
        "imports": {
            name: import_profile(args, env, work) for name, args in light_commands(work, pred, truth).items()
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=300, help="images x 5 attributes = mask pairs")
    parser.add_argument("--sizes", default=DEFAULT_SIZES, help="WxH:weight,... image sizes to draw from")
    parser.add_argument(
        "--repeats", type=int, default=3, help="runs of each dermseg command; the best counts"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--before-src", type=Path, help="another tree's src/ to time the same commands on")
    parser.add_argument("--before-name", default="before", help="what --before-src is, for BENCHMARKS.md")
    args = parser.parse_args()

    sizes = parse_sizes(args.sizes)
    load_before = os.getloadavg()  # other processes on the machine slow every number here
    with tempfile.TemporaryDirectory(prefix="dermseg-startup-") as tmp:
        work = Path(tmp)
        truth, pred = work / "truth", work / "pred"
        truth.mkdir()
        pred.mkdir()
        with ThreadPoolExecutor() as pool:
            list(pool.map(lambda i: write_pair(truth, pred, i, sizes, args.seed), range(args.images)))
        pairs = len(list(truth.iterdir()))
        env = _env(ROOT / "src")
        # a tiny synthetic dataset (with lesion masks) for check, split and Task 1 evaluate
        run_timed([sys.executable, "-m", "dermseg", "synth", str(work / "syn"), "--n", "4", "--size", "64",
                   "--lesion-masks"], env, work)  # fmt: skip
        print(f"{pairs} mask pairs in {work}")

        official_s, done = run_timed([sys.executable, "-c", OFFICIAL, str(truth), str(pred)], env, work)
        official = json.loads(done.stdout)
        print(f"official scorer, end to end: {official_s:.2f} s")
        after = measure(ROOT / "src", work, pred, truth, args.repeats)
        print(
            f"dermseg evaluate, end to end: {after['evaluate_s']:.2f} s (scoring alone "
            f"{after['scoring_s']:.2f} s); --help {after['help_s']:.2f} s"
        )
        before = None
        if args.before_src is not None:
            before = measure(args.before_src.resolve(), work, pred, truth, args.repeats)
            print(f"before: evaluate {before['evaluate_s']:.2f} s; --help {before['help_s']:.2f} s")
        python_s = best_wall(args.repeats, [sys.executable, "-c", "pass"], env, work)
        torch_s = best_wall(1, [sys.executable, "-c", "import torch"], env, work)

    official_keys = {key: after["scores"][key] for key in official}
    record = {
        "tag": TAG,
        "machine": machine(),
        "date": datetime.date.today().isoformat(),
        "load_average_before": [round(x, 2) for x in load_before],
        "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "pairs": pairs,
        "official_s": round(official_s, 3),
        "python_s": round(python_s, 3),
        "import_torch_s": round(torch_s, 3),
        "after": {k: v for k, v in after.items() if k != "scores"},
        "before": None if before is None else {k: v for k, v in before.items() if k != "scores"},
        "speedup_end_to_end": round(official_s / after["evaluate_s"], 1),
        "speedup_scoring_alone": round(official_s / after["scoring_s"], 1),
        "max_abs_diff": max_abs_diff(official, official_keys),
    }
    if before is not None:
        record["speedup_end_to_end_before"] = round(official_s / before["evaluate_s"], 1)
        record["before_same_scores"] = before["scores"] == after["scores"]
    print(json.dumps(record, indent=2))
    (ROOT / "benchmarks" / "results").mkdir(parents=True, exist_ok=True)
    (ROOT / "benchmarks" / "results" / "startup.json").write_text(json.dumps(record, indent=2) + "\n")
    write_section(record)


def write_section(record: dict) -> None:
    """Replace (or add) the startup section of BENCHMARKS.md, leaving the others alone."""
    a, after, before = record["args"], record["after"], record["before"]
    command = "python benchmarks/startup.py"
    defaults = {
        "images": 300,
        "sizes": DEFAULT_SIZES,
        "repeats": 3,
        "seed": 0,
        "before_src": None,
        "before_name": "before",
    }
    command += "".join(
        f" --{k.replace('_', '-')} {shlex.quote(str(v))}" for k, v in a.items() if defaults.get(k) != v
    )
    target = "met" if record["speedup_end_to_end"] >= 10 else "not met"
    official = record["official_s"]
    rows = [
        "| command (a fresh process each) | seconds | official scorer / this |",
        "|---|---:|---:|",
        f"| official `isic_challenge_scoring.task2.score` (`python -c`) | {official:.2f} | 1.0x |",
    ]
    if before is not None:
        rows.append(
            f"| `dermseg evaluate --pred --gt`, before | {before['evaluate_s']:.2f} "
            f"| {record['speedup_end_to_end_before']:.1f}x |"
        )
    rows += [
        f"| `dermseg evaluate --pred --gt`{', after' if before else ''} | {after['evaluate_s']:.2f} "
        f"| **{record['speedup_end_to_end']:.1f}x** |",
        f"| its scoring alone (`evaluate_folders`, timed inside a fresh process) "
        f"| {after['scoring_s']:.2f} | {record['speedup_scoring_alone']:.1f}x |",
    ]
    if before is not None:
        rows.append(f"| `dermseg --help`, before | {before['help_s']:.2f} | |")
    rows += [
        f"| `dermseg --help`{', after' if before else ''} | {after['help_s']:.2f} | |",
        f"| `python -c pass` / `python -c 'import torch'` | {record['python_s']:.2f} / "
        f"{record['import_torch_s']:.2f} | |",
    ]
    head = "| command (`python -X importtime -m dermseg ...`) | import s | heavy libraries imported |"
    if before is not None:
        head = (
            "| command (`python -X importtime -m dermseg ...`) | import s, before | heavy, before "
            "| import s, after | heavy, after |"
        )
    imports = [head, "|---|---:|---|" + ("---:|---|" if before else "")]
    for name, prof in after["imports"].items():
        heavy = ", ".join(prof["heavy"]) or "none"
        if before is not None:
            old = before["imports"][name]
            imports.append(
                f"| `{name}` | {old['import_s']:.2f} | {', '.join(old['heavy']) or 'none'} "
                f"| {prof['import_s']:.2f} | {heavy} |"
            )
        else:
            imports.append(f"| `{name}` | {prof['import_s']:.2f} | {heavy} |")
    lines = [
        f"<!-- {TAG} -->",
        "### Start-up: `dermseg` commands import only what they use",
        "",
        f"Machine: {record['machine']}; {record['date']}; **the CPU was shared** with other jobs "
        f"(load average before the run {record['load_average_before'][0]:.1f}), so every number here "
        f"is a best of {a['repeats']} (the official scorer: one run). {record['pairs']} truth/prediction "
        f"pairs ({a['images']} images x 5 attributes) of 0/255 PNGs drawn as in `eval_speed.py`, in the "
        "page cache. Each command is timed as a fresh process, start to exit."
        + ("" if before is None else f" Before: {a['before_name']}; after: this checkout."),
        "",
        *rows,
        "",
        "Start-up and printing (`evaluate` end to end minus its scoring alone, run by run, median): "
        f"{after['startup_s']:.2f} s"
        + ("" if before is None else f", {before['startup_s']:.2f} s before")
        + f". The issue's target, `evaluate` end to end >= 10x the official scorer, is {target} in this run "
        f"({record['speedup_end_to_end']:.1f}x); past start-up it is bounded by the ratio of the scoring "
        f"alone ({record['speedup_scoring_alone']:.1f}x), which other jobs on the CPU lower (the official "
        "scorer uses one core, `evaluate_folders` two) and which moves from run to run with their load.",
        "",
        f"Scores of `dermseg evaluate`: max abs difference {record['max_abs_diff']:.1e} to the official "
        f"ones over every official key"
        + ("" if before is None else f"; identical before and after: {record['before_same_scores']}")
        + ". Import time per command (`-X importtime`, the top-level entries summed; the light "
        "commands on a 4-image `synth` dataset, `evaluate` on the folders above):",
        "",
        *imports,
        "",
        f"Command: `{command}`",
        f"<!-- /{TAG} -->",
    ]
    replace_section(TAG, lines)


if __name__ == "__main__":
    main()
