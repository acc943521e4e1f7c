"""inferlab em | select: seeds x K grids through the sweep executor (the course's K-means / EM with its BIC, and
the CAVI ELBO of any registered model)."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from inference.cli.common import (UsageError, add_model_arguments, add_sweep_options, executor, load_data, make_model,
                                  nonneg_float, nonneg_int, positive_int, spec_of)

__all__ = ["add_parsers"]


def _course_matrix(name: str):
    from models.course.gmm import COURSE_DATA, load_course_matrix

    if name in COURSE_DATA:
        return load_course_matrix(name)
    from models.readers import read_dense_file

    path = Path(name)
    if not path.is_file():
        raise UsageError(f"{name!r}: not a data set name ({', '.join(COURSE_DATA)}) nor a file")
    X = read_dense_file(path)
    if np.isnan(X).any():
        raise UsageError(f"{name}: NaN entries; the course's files mark a missing entry with 0")
    return X, None


def _print_fill(args, X, gold, K: int, seed: int, run) -> None:
    from models.course import gmm

    filled = gmm.fill_matrix(X, run.mixture)
    rated = gold != 0
    print(f"RMSE of the filled matrix (best K={K}, seed {seed}) against {args.data}_complete:")
    print(f"  over all entries (the course's figure): {gmm.rmse(gold, filled):.10f}")
    print(f"  over the missing entries only:          {gmm.rmse(gold, filled, (X == 0) & rated):.10f}")
    print("  (the all-entries figure is flattered: observed entries are copied, error 0.)")
    if (~rated).any():
        print(f"  note: {int((~rated).sum())} entries of {args.data}_complete are 0 (not rated) and are left "
              "out of the missing-only figure; the course's all-entries figure includes them.")


def _plot_best(args, X, best_runs: dict, objective: str) -> None:
    if X.shape[1] != 2:
        raise UsageError("--plot draws 2-D data only (e.g. --data toy)")
    from inference.workflows.plots import plot_mixture, save_figure, use_agg

    use_agg()
    for K, (seed, run) in best_runs.items():
        fig = plot_mixture(X, run.mixture, run.post, title=f"{args.method}, K={K}, seed {seed}, "
                                                            f"{objective} {run.objective:.4f}")
        print(f"wrote {save_figure(fig, Path(args.plot) / f'{args.method}_K{K}.png', close=True)}")


def cmd_em(args: argparse.Namespace) -> int:
    """The course's K-means / EM runs over K and seeds, as the MITx project prints them; the K x seeds grid runs
    through the sweep executor (local processes by default, or --scheduler)."""
    from inference.workflows.selection import best_per_K, course_grid, plot_grid
    from models.course import gmm

    X, gold = _course_matrix(args.data)
    missing = bool((X == 0).any()) and args.data != "toy"
    if args.method == "kmeans" and missing:
        raise UsageError("--method kmeans needs complete data (0 marks a missing entry here)")
    method = "kmeans" if args.method == "kmeans" else ("em_missing" if missing else "em")
    run_fn = {"kmeans": gmm.kmeans, "em": gmm.em_complete, "em_missing": gmm.em_missing}[method]
    objective = "cost" if args.method == "kmeans" else "LL"
    pool = executor(args)
    print(f"{args.method} on {args.data} ({X.shape[0]} x {X.shape[1]}"
          f"{', 0 = missing' if missing else ''}); seeds {args.seeds}; {pool.name}")
    try:
        runs = course_grid(X, args.K, args.seeds, method=method, out=Path(args.out) if args.out else None,
                           executor=pool, progress=not args.no_progress, overwrite=args.overwrite)
    finally:
        pool.close()
    print(f"{'K':>3} {'seed':>4} {objective:>18} {'iters':>6} {'seconds':>8}")
    for r in runs.itertuples():
        print(f"{r.K:>3} {r.seed:>4} {r.objective:>18.10f} {r.iterations:>6} {r.seconds:>8.3f}")
    best = best_per_K(runs, "objective", maximise=args.method != "kmeans")
    best_runs = {}
    for b in best.itertuples():
        run = run_fn(X, gmm.init(X, int(b.K), int(b.seed))[0])  # deterministic: the same run, with its posteriors
        best_runs[int(b.K)] = (int(b.seed), run)
        extra = "" if args.method == "kmeans" else f", BIC {b.bic:.4f}"
        total = runs.loc[runs["K"] == b.K, "seconds"].sum()
        print(f"best K={b.K}: seed {b.seed}, {objective} {b.objective:.10f}{extra} (total {total:.2f} s)")
    if args.method != "kmeans" and len(best) > 1:
        pick = best.loc[best["bic"].idxmax()]
        print(f"BIC (larger is better) chooses K={int(pick['K'])} ({pick['bic']:.4f})")
    if args.out:
        runs.drop(columns=["mu", "var", "p"]).to_csv(Path(args.out) / "runs.csv", index=False)
        column = "objective" if args.method == "kmeans" else "bic"
        path = plot_grid(runs, column, Path(args.out) / f"{args.method}_{column}_vs_K.png",
                         maximise=args.method != "kmeans", title=f"{args.method} on {args.data}: {column} over seeds")
        print(f"wrote {Path(args.out) / 'runs.csv'}, {path}")
    if gold is not None and args.method == "em":
        K = max(best_runs)
        _print_fill(args, X, gold, K, *best_runs[K])
    if args.plot:
        _plot_best(args, X, best_runs, objective)
    return 0


def cmd_select(args: argparse.Namespace) -> int:
    """CAVI over K x seeds; the best ELBO per K, the K it chooses, and a plot."""
    import pandas as pd

    from inference.workflows.selection import best_per_K, elbo_grid, plot_grid

    spec = spec_of(args.model)
    model = make_model(spec, args, min(args.Ks))
    data = load_data(spec, args)
    pool = executor(args)
    print(f"CAVI on {args.model} ({data!r}): K {args.Ks} x seeds {args.seeds}; {pool.name}")
    try:
        runs = elbo_grid(model, data, args.Ks, args.seeds, num_iters=args.iters or 500, tol=args.tol, out=args.out,
                         executor=pool, progress=not args.no_progress, overwrite=args.overwrite)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    finally:
        pool.close()
    best = best_per_K(runs, "elbo")
    best["converged_seeds"] = runs.groupby("K")["converged"].sum().values
    with pd.option_context("display.width", 200, "display.precision", 4):
        print(best[["K", "seed", "elbo", "elbo_worst_seed", "iterations", "converged_seeds"]].to_string(index=False))
    pick = best.loc[best["elbo"].idxmax()]
    print(f"the ELBO (a lower bound on log p(X | K)) is highest at K={int(pick['K'])} ({pick['elbo']:.4f})")
    if args.out:
        runs.to_csv(Path(args.out) / "runs.csv", index=False)
        path = plot_grid(runs, "elbo", Path(args.out) / "elbo_vs_K.png", title=f"CAVI ELBO on {args.model}")
        print(f"wrote {Path(args.out) / 'runs.csv'}, {path}")
    return 0


def add_parsers(sub) -> None:
    e = sub.add_parser("em", help="the course's K-means / EM (spherical GMM) over K and seeds")
    e.add_argument("data", help="netflix, test, toy, or a whitespace-separated matrix file (0 = missing)")
    e.add_argument("--K", type=positive_int, nargs="+", required=True, help="numbers of components, e.g. --K 1 12")
    e.add_argument("--seeds", type=nonneg_int, nargs="+", default=[0, 1, 2, 3, 4])
    e.add_argument("--method", choices=["em", "kmeans"], default="em")
    e.add_argument("--plot", default=None, metavar="DIR", help="write the course's mixture plot per K (2-D data)")
    add_sweep_options(e)
    e.set_defaults(func=cmd_em)

    se = sub.add_parser("select", help="choose K by the CAVI ELBO over a K x seeds grid (any model with CAVI)")
    add_model_arguments(se)
    se.add_argument("--K", dest="Ks", type=positive_int, nargs="+", required=True,
                    help="values of K, e.g. --K 1 2 3 4 5")
    se.add_argument("--seeds", type=nonneg_int, nargs="+", default=[0, 1, 2, 3, 4])
    se.add_argument("--tol", type=nonneg_float, default=1e-8, help="CAVI relative ELBO tolerance")
    add_sweep_options(se)
    se.set_defaults(func=cmd_select)
