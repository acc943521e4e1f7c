"""inferlab benchmark gaussian-mf | grid-mrf.

    inferlab benchmark gaussian-mf --data movielens-100k --K 10    # every recommender method on the official splits
    inferlab benchmark grid-mrf --size 256 512 1024 -K 5            # ms per sweep of each closed-form grid method
"""

from __future__ import annotations

import argparse
from pathlib import Path

from inference.cli.common import UsageError, add_overwrite_option, executor, nonneg_int, positive_int

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
        extra = f", test LPD {row['test_lpd']:.4f}" if row["test_lpd"] is not None else ""
        print(f"  {row['method']:>10s} K={row['K']:<3d} {row['split']:>7s}: RMSE {row['test_rmse']:.4f}{extra}, "
              f"{row['fit_s']:.1f} s", flush=True)

    pool = executor(args, default="serial")
    try:
        rows = benchmark(args.data, methods, args.Ks, settings, out=args.out, progress=not args.no_progress,
                         on_row=show, executor=pool, overwrite=args.overwrite)
    finally:
        pool.close()
    print(summary_table(rows))
    if args.out:
        print(f"wrote {Path(args.out) / 'benchmark.csv'}, {Path(args.out) / 'benchmark.md'}")
    return 0


def cmd_grid(args: argparse.Namespace) -> int:
    import torch

    from inference.workflows.speed import sweep_times
    from models.grid.images import COURSE_SMALL
    from models.grid.model import GridMRF
    from models.grid.spec import load_spiral

    if args.repeats < 1 or args.K < 2 or any(n < 2 for n in args.size):
        raise UsageError("--repeats must be >= 1, -K >= 2 and every --size >= 2")
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    methods = tuple(m.strip() for m in args.methods.split(",") if m.strip())
    model = GridMRF.course(args.K)
    print(f"grid-mrf, the course's potentials, K={args.K}, spiral images with {args.noise:.0%} noise, float64, "
          f"{torch.get_num_threads()} torch threads; median (quartiles) of {args.repeats} timed steps")
    print(f"  {'size':>11}  {'method':<6} {'step':<18} {'ms per step':>22}  {'ns per pixel':>12}")

    def show(label: str, pixels: int, row: dict) -> None:
        spread = f"{row['ms']:.3g} ({row['ms_q1']:.3g}-{row['ms_q3']:.3g})"
        print(f"  {label:>11}  {row['method']:<6} {row['step']:<18} {spread:>22}  {1e6 * row['ms'] / pixels:>12.1f}",
              flush=True)
    for n in args.size:
        data = load_spiral(args.K, n, args.noise, args.seed)
        for row in sweep_times(model, data, tuple(m for m in methods if m != "exact"), repeats=args.repeats,
                               seed=args.seed):
            show(f"{n}x{n}", n * n, row)
    if "exact" in methods:
        for row in sweep_times(GridMRF.course(2), COURSE_SMALL, ("exact",), repeats=max(args.repeats, 100)):
            show("3x3 small", 9, row)
    return 0


def add_parsers(sub) -> None:
    top = sub.add_parser("benchmark", help="benchmarks: gaussian-mf recommenders, grid-mrf speed")
    models = top.add_subparsers(dest="benchmark", required=True, metavar="MODEL")
    b = models.add_parser("gaussian-mf", help="every recommender method on the official splits")
    b.add_argument("--data", default="movielens-100k", choices=["movielens-100k", "netflix"],
                   help="movielens-100k (folds u1..u5) or netflix (MITx 1200 x 1200: the entries complete fills in)")
    b.add_argument("--K", dest="Ks", type=positive_int, nargs="+", default=[10],
                   help="factor counts, e.g. --K 5 10 20 30")
    b.add_argument("--methods", default="gibbs,cavi,cavi-fixed,svi,als,funk,svd",
                   help="comma-separated subset of gibbs, cavi, cavi-fixed, svi, als, funk, svd")
    b.add_argument("--samples", type=positive_int, default=400, help="Gibbs: kept sweeps (after --warmup)")
    b.add_argument("--warmup", type=nonneg_int, default=50, help="Gibbs: discarded sweeps")
    b.add_argument("--iters", type=positive_int, default=200, help="CAVI: most sweeps")
    b.add_argument("--epochs", type=positive_int, default=20, help="SVI epochs (and biased SGD epochs)")
    b.add_argument("--seed", type=nonneg_int, default=0)
    b.add_argument("--out", default=None, help="folder for benchmark.csv, benchmark.md and fits/ (resumable)")
    b.add_argument("--scheduler", default=None, help="run the fits on 'local' processes or a Dask scheduler "
                                                     "tcp://HOST:PORT (default: one after another, for clean timings)")
    b.add_argument("--workers", type=positive_int, default=None, help="local processes with --scheduler local")
    add_overwrite_option(b)
    b.add_argument("--no-progress", action="store_true", help="no progress bar")
    b.set_defaults(func=cmd_benchmark)
    g = models.add_parser("grid-mrf", help="ms per sweep / iteration of each closed-form method on spiral images")
    g.add_argument("--size", type=positive_int, nargs="+", default=[256], help="image sides, e.g. --size 256 512 1024")
    g.add_argument("-K", "--K", dest="K", type=positive_int, default=5, help="labels (spiral arms; default 5)")
    g.add_argument("--noise", type=float, default=0.2, help="fraction of pixels replaced by a random label")
    g.add_argument("--methods", default="cavi,bp,gibbs,em,exact",
                   help="comma-separated subset of cavi (checkerboard mean field), bp (flooding loopy BP), gibbs "
                        "(checkerboard, one chain), em (ICM), exact (on the course's 3 x 3 example)")
    g.add_argument("--repeats", type=positive_int, default=20, help="timed steps per method (the median is reported)")
    g.add_argument("--threads", type=positive_int, default=None, help="torch threads (default: torch's)")
    g.add_argument("--seed", type=nonneg_int, default=0)
    g.set_defaults(func=cmd_grid)
