"""inferlab benchmark gaussian-mf: the recommender benchmark (every method on the official splits)."""

from __future__ import annotations

import argparse
from pathlib import Path

from inference.cli.common import UsageError, executor

__all__ = ["add_parsers"]


def cmd_benchmark(args: argparse.Namespace) -> int:
    from inference.workflows.benchmark import Settings, benchmark, summary_table

    for name in ("samples", "iters", "epochs"):
        if getattr(args, name) < 1:
            raise UsageError(f"--{name} must be >= 1, got {getattr(args, name)}")
    settings = Settings(gibbs_samples=args.samples, gibbs_warmup=args.warmup, cavi_iters=args.iters,
                        svi_epochs=args.epochs, funk_epochs=args.epochs, seed=args.seed)
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]

    def show(row: dict) -> None:
        extra = f", test LPD {row['test_lpd']:.4f}" if row["test_lpd"] == row["test_lpd"] else ""
        print(f"  {row['method']:>10s} K={row['K']:<3d} {row['split']:>7s}: RMSE {row['test_rmse']:.4f}{extra}, "
              f"{row['fit_s']:.1f} s", flush=True)

    pool = executor(args, default="serial")
    try:
        rows = benchmark(args.data, methods, args.Ks, settings, out=args.out, progress=not args.no_progress,
                         on_row=show, executor=pool)
    finally:
        pool.close()
    print(summary_table(rows))
    if args.out:
        print(f"wrote {Path(args.out) / 'benchmark.csv'}, {Path(args.out) / 'benchmark.md'}")
    return 0


def add_parsers(sub) -> None:
    b = sub.add_parser("benchmark", help="gaussian-mf recommender benchmark: every method on the official splits")
    b.add_argument("model", choices=["gaussian-mf"], help="gaussian-mf")
    b.add_argument("--data", default="movielens-100k", choices=["movielens-100k", "netflix"],
                   help="movielens-100k (folds u1..u5) or netflix (MITx 1200 x 1200: the entries complete fills in)")
    b.add_argument("--K", dest="Ks", type=int, nargs="+", default=[10], help="factor counts, e.g. --K 5 10 20 30")
    b.add_argument("--methods", default="gibbs,cavi,cavi-fixed,svi,als,funk,svd",
                   help="comma-separated subset of gibbs, cavi, cavi-fixed, svi, als, funk, svd")
    b.add_argument("--samples", type=int, default=400, help="Gibbs: kept sweeps (after --warmup)")
    b.add_argument("--warmup", type=int, default=50, help="Gibbs: discarded sweeps")
    b.add_argument("--iters", type=int, default=200, help="CAVI: most sweeps")
    b.add_argument("--epochs", type=int, default=20, help="SVI epochs (and biased SGD epochs)")
    b.add_argument("--seed", type=int, default=0)
    b.add_argument("--out", default=None, help="folder for benchmark.csv, benchmark.md and fits/ (resumable)")
    b.add_argument("--scheduler", default=None, help="run the fits on 'local' processes or a Dask scheduler "
                                                     "tcp://HOST:PORT (default: one after another, for clean timings)")
    b.add_argument("--workers", type=int, default=None, help="local processes with --scheduler local")
    b.add_argument("--no-progress", action="store_true", help="no progress bar")
    b.set_defaults(func=cmd_benchmark)
