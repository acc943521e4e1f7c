"""Whole-process wall time of the main job, as a user runs it (Python start, imports, data, fit, draws, PSIS,
writing the result), and of `python -c "import models"`:

    python benchmarks/process_bench.py                        # 7 runs of each, medians
    python benchmarks/process_bench.py --against ../old-main  # the same, alternating with another checkout

The job is `inferlab fit poisson-mf --data lastfm --method cavi -K 40 --iters 200 --seed 0 --out DIR`, run as
`python -m inference ...` with this interpreter. With --against, every run of this checkout is followed by one of the
other (a `git worktree` of an older commit, say), so that both see the same machine load; the ratio of medians is
the figure to quote on a noisy machine. Needs LastFM (INFERLAB_DATA or the download cache).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
JOB = ["fit", "poisson-mf", "--data", "lastfm", "--method", "cavi", "-K", "40", "--iters", "200", "--seed", "0"]


def timed(checkout: Path, args: list[str]) -> float:
    env = dict(os.environ, PYTHONPATH=str(checkout), MPLBACKEND="Agg")
    start = time.perf_counter()
    subprocess.run([sys.executable, *args], cwd=checkout, env=env, check=True, capture_output=True)
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--against", type=Path, default=None, help="another checkout of the repository, timed alternately")
    args = ap.parse_args()
    checkouts = {"this checkout": ROOT}
    if args.against is not None:
        if not (args.against / "inference").is_dir():
            sys.exit(f"--against: {args.against} is not a checkout of this repository (no inference/ folder)")
        checkouts[f"--against {args.against}"] = args.against.resolve()
    times: dict[tuple[str, str], list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for checkout in checkouts.values():  # a first run of each: caches (parsed data, compiled loops) are filled
            timed(checkout, ["-m", "inference", *JOB, "--out", str(Path(tmp) / "warm")])
            shutil.rmtree(Path(tmp) / "warm")
        for _ in range(args.runs):
            for name, checkout in checkouts.items():
                out = Path(tmp) / "out"
                fit = timed(checkout, ["-m", "inference", *JOB, "--out", str(out)])
                times.setdefault((name, "fit"), []).append(fit)
                shutil.rmtree(out)
                times.setdefault((name, "import"), []).append(timed(checkout, ["-c", "import models"]))
    print(f"## Whole process, {args.runs} runs each (medians; ranges)\n")
    print("| checkout | `inferlab " + " ".join(JOB) + " --out DIR` | `python -c \"import models\"` |")
    print("|---|---|---|")
    for name in checkouts:
        fit, imp = times[name, "fit"], times[name, "import"]
        print(f"| {name} | {statistics.median(fit):.2f} s ({min(fit):.2f}-{max(fit):.2f}) | "
              f"{statistics.median(imp):.2f} s ({min(imp):.2f}-{max(imp):.2f}) |")
    if args.against is not None:
        this, other = (statistics.median(times[name, "fit"]) for name in checkouts)
        print(f"\nratio of the fit medians, this checkout / --against: {this / other:.2f}")


if __name__ == "__main__":
    main()
