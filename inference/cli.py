"""The ``inferlab`` command line (also ``python -m inference``).

    inferlab fit poisson-mf --data lastfm --method cavi -K 40 --iters 200 --seed 0 --out DIR
    inferlab compare poisson-mf --data synthetic --seed 0 --out DIR
    inferlab em netflix --K 1 12 --seeds 0 1 2 3 4 [--scheduler tcp://HOST:PORT] [--out DIR]
    inferlab select bayes-gmm --data toy --K 1 2 3 4 5 --seeds 0 1 2 --out DIR
    inferlab fit gaussian-mf --data movielens-100k --fold 1 --method gibbs -K 10 --noise-prior 1 1 --recommend 0
    inferlab benchmark gaussian-mf --data movielens-100k --K 5 10 20 30 --out DIR
    inferlab sbc gaussian-mf --replications 200 --out DIR [--scheduler tcp://HOST:PORT]
    inferlab geweke bayes-gmm-full
    inferlab data                      # where each data set is looked up, and whether it is there

Errors in the input (bad counts, K < 1, unknown names, unreadable files) print one line on stderr
and exit with status 2.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

MODEL_NAMES = ("poisson-mf", "bayes-gmm", "bayes-gmm-full", "gaussian-mf")
DATA_NAMES = {"poisson-mf": ("synthetic", "lastfm"), "bayes-gmm": ("synthetic", "toy"),
              "bayes-gmm-full": ("synthetic", "toy"), "gaussian-mf": ("synthetic", "movielens-100k")}
HYPER_NAMES = {"poisson-mf": ("a_theta", "b_theta", "a_eta", "b_eta"),
               "bayes-gmm": ("alpha0", "m0", "beta0", "a0", "b0"),
               "bayes-gmm-full": ("alpha0", "m0", "beta0", "w0", "nu0"),
               "gaussian-mf": ("alpha", "sigma_U", "sigma_V", "beta0", "w0")}


class UsageError(ValueError):
    pass


def _model(name: str, K: int, hyper: list[str], extra: dict[str, Any] | None = None) -> Any:
    from models import BayesGMM, BayesGMMFull, PoissonMF
    from models.gaussian_mf import GaussianMF

    classes = {"poisson-mf": PoissonMF, "bayes-gmm": BayesGMM, "bayes-gmm-full": BayesGMMFull, "gaussian-mf": GaussianMF}
    if name not in classes:
        raise UsageError(f"unknown model {name!r}; available: {', '.join(MODEL_NAMES)}")
    kw: dict[str, float] = {}
    for item in hyper or []:
        key, sep, value = item.partition("=")
        if not sep:
            raise UsageError(f"--hyper expects NAME=VALUE, got {item!r}")
        try:
            kw[key] = float(value)
        except ValueError:
            raise UsageError(f"--hyper {key}: {value!r} is not a number") from None
    unknown = set(kw) - set(HYPER_NAMES[name])
    if unknown:
        raise UsageError(f"--hyper: unknown hyperparameter(s) {sorted(unknown)} for {name}; "
                         f"known: {', '.join(HYPER_NAMES[name])}")
    return classes[name](K=K, **kw, **(extra or {}))


def _data(model_name: str, name: str, args: argparse.Namespace) -> Any:
    from models import as_count_matrix
    from models.datasets import load_lastfm

    if name not in DATA_NAMES.get(model_name, ()) and not Path(name).exists():
        raise UsageError(f"--data {name!r}: not a data set name for {model_name} "
                         f"({', '.join(DATA_NAMES[model_name])}) nor a file")
    if name == "lastfm":
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            data = load_lastfm()
        for w in caught:
            print(f"note: {w.message}", file=sys.stderr)
        return data
    if name == "synthetic":
        from models import BayesGMM, PoissonMF

        g = torch.Generator().manual_seed(args.seed)
        if model_name == "bayes-gmm":  # well-separated components: prior means spread 1/sqrt(0.02) = 7 sds
            return BayesGMM(K=args.true_K, beta0=0.02, a0=2.0, b0=2.0).sample(args.rows, args.cols, g)[1]
        if model_name == "bayes-gmm-full":
            from models import BayesGMMFull

            return BayesGMMFull(K=args.true_K, beta0=0.02).sample(args.rows, args.cols, g)[1]
        if model_name == "gaussian-mf":  # a low-rank matrix plus noise, half of its entries observed
            from models.gaussian_mf import as_rating_data

            U = torch.randn(args.rows, args.true_K, generator=g, dtype=torch.float64)
            V = torch.randn(args.cols, args.true_K, generator=g, dtype=torch.float64)
            R = 3.0 + U @ V.T / args.true_K ** 0.5 + 0.5 * torch.randn(args.rows, args.cols, generator=g, dtype=torch.float64)
            R[torch.rand(R.shape, generator=g) < 0.5] = float("nan")
            return as_rating_data(R, name=f"synthetic {args.rows}x{args.cols}")
        truth = PoissonMF(K=args.true_K, a_theta=1.0, b_theta=1.0, a_eta=1.0, b_eta=1.0)
        return truth.sample(args.rows, args.cols, g)[1]
    if name == "movielens-100k":
        from models.datasets import load_movielens_100k
        from models.gaussian_mf import as_rating_data

        if not 1 <= args.fold <= 5:
            raise UsageError(f"--fold must be 1..5, got {args.fold}")
        train, _ = load_movielens_100k().folds[args.fold - 1]
        return as_rating_data(train, name=f"movielens-100k u{args.fold}.base", rating_range=(1, 5))
    if name == "toy" and model_name.startswith("bayes-gmm"):
        from models import as_mixture_data
        from models.datasets import load_netflix

        return as_mixture_data(load_netflix("toy"), name="toy")
    path = Path(name)
    if not path.exists():
        raise UsageError(f"--data {name!r}: not a data set name ({', '.join(DATA_NAMES[model_name])}) nor a file")
    import pandas as pd

    try:
        if model_name.startswith("bayes-gmm"):
            from models import as_mixture_data

            arr = np.load(path) if path.suffix == ".npy" else np.loadtxt(path)
            return as_mixture_data(arr, name=path.name)
        if path.suffix == ".npy":
            return as_count_matrix(np.load(path), name=path.name)
        return as_count_matrix(pd.read_csv(path), name=path.name)
    except (OSError, pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise UsageError(f"--data {name!r}: cannot read the file ({exc})") from None


def _method_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    kw: dict[str, Any] = {"seed": args.seed, "progress": not args.no_progress,
                          "dtype": torch.float32 if args.float32 else torch.float64, "device": args.device}
    m = args.method
    if m in ("cavi", "svi", "em"):
        kw["num_iters"] = args.iters
    if m in ("gibbs", "nuts"):
        kw["num_samples"] = args.samples or args.iters
        kw["num_chains"] = args.chains
    if m == "cavi" and args.init:
        kw["init"] = args.init
        if args.init == "reference":
            kw["elbo_at"] = "after_eta"
    if m == "nuts":
        kw["dtype"] = torch.float64
    return kw


def _extra(args: argparse.Namespace) -> dict[str, Any]:
    """Model options that are not numbers: gaussian-mf's prior and noise prior."""
    if args.model != "gaussian-mf":
        return {}
    return {"prior": args.prior, "noise_prior": tuple(args.noise_prior) if args.noise_prior else None}


def cmd_fit(args: argparse.Namespace) -> int:
    from inference import METHODS
    from models.poisson_mf import factor_top_items

    if args.method not in METHODS:
        raise UsageError(f"unknown method {args.method!r}; available: {', '.join(METHODS)}")
    model = _model(args.model, args.K, args.hyper, _extra(args))
    data = _data(args.model, args.data, args)
    result = METHODS[args.method](model, data, **_method_kwargs(args))
    print(result.describe())
    top = factor_top_items(result, n=5, num_factors=min(5, model.K)) if args.model == "poisson-mf" else []
    if len(top):
        print("top factors (by total loading; 5 items each):")
        for k, grp in top.groupby("factor", sort=False):
            print(f"  factor {k:>3} (loading {grp['loading'].iloc[0]:.1f}): " + ", ".join(map(str, grp["name"])))
    if args.model == "gaussian-mf" and args.data == "movielens-100k":
        from models.datasets import load_movielens_100k
        from models.gaussian_mf import _heldout, as_rating_data

        ml = load_movielens_100k()
        test = as_rating_data(ml.folds[args.fold - 1][1])
        score = _heldout(model, data, result, test)
        print(f"  u{args.fold}.test: RMSE {score['test_rmse']:.4f}, log predictive density per rating "
              f"{score['heldout_lpd_per_rating']:.4f}")
        if args.recommend is not None:
            import pandas as pd

            from models.gaussian_mf import recommend

            top = recommend(model, data, result, args.recommend, n=10, titles=ml.titles)
            print(f"top 10 for user {args.recommend} (0-based; MovieLens id {args.recommend + 1}), unrated items:")
            with pd.option_context("display.width", 200, "display.precision", 3):
                print(top.to_string(index=False))
    if args.out:
        path = result.save(Path(args.out) / f"{args.method}.nc")
        print(f"saved {path}")
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    import pandas as pd

    from inference.compare import compare

    model = _model(args.model, args.K, args.hyper, _extra(args))
    data = _data(args.model, args.data, args)
    methods = [m.strip() for m in args.methods.split(",") if m.strip()] if args.methods else (
        ["cavi", "gibbs", "svi", "nuts", "em"] if args.data == "synthetic" else ["cavi", "gibbs", "svi", "em"])
    settings = {}
    if args.iters:
        settings = {"cavi": {"num_iters": args.iters}, "svi": {"num_iters": args.iters}, "em": {"num_iters": args.iters}}
    if args.samples:
        settings.update(gibbs={"num_samples": args.samples, "warmup": args.samples // 2},
                        nuts={"num_samples": args.samples, "warmup": args.samples})
    comp = compare(model, data, methods=methods, seed=args.seed, settings=settings, out=args.out,
                   progress=not args.no_progress)
    with pd.option_context("display.width", 200, "display.max_columns", 20, "display.precision", 5):
        print(comp.table.to_string(index=False))
    print(f"reference method for agreement: {comp.reference}")
    if args.out:
        print(f"wrote {', '.join(str(p) for p in comp.files)}")
    return 0


def _load_matrix(name: str):
    from models.datasets import load_netflix

    if name in ("netflix", "test"):
        nf = load_netflix(name)
        return nf.incomplete, nf.complete
    if name == "toy":
        return load_netflix("toy"), None
    path = Path(name)
    if not path.is_file():
        raise UsageError(f"{name!r}: not a data set name (netflix, test, toy) nor a file")
    try:
        return np.loadtxt(path), None
    except (OSError, ValueError) as exc:
        raise UsageError(f"{name!r}: cannot read the matrix ({exc})") from None


def _executor(args: argparse.Namespace):
    from inference.sweep import get_executor

    try:
        return get_executor(args.scheduler, workers=args.workers)
    except ValueError as exc:
        raise UsageError(f"--scheduler: {exc}") from None


def cmd_em(args: argparse.Namespace) -> int:
    """The course's K-means / EM runs over K and seeds, as the MITx project prints them; the K x seeds grid runs
    through the sweep executor (local processes by default, or --scheduler)."""
    from inference.selection import best_per_K, course_grid, plot_grid
    from models import gmm

    X, gold = _load_matrix(args.data)
    missing = bool((X == 0).any()) and args.data != "toy"
    if args.method == "kmeans" and missing:
        raise UsageError("--method kmeans needs complete data (0 marks a missing entry here)")
    method = "kmeans" if args.method == "kmeans" else ("em_missing" if missing else "em")
    run_fn = {"kmeans": gmm.kmeans, "em": gmm.em_complete, "em_missing": gmm.em_missing}[method]
    objective = "cost" if args.method == "kmeans" else "LL"
    executor = _executor(args)
    print(f"{args.method} on {args.data} ({X.shape[0]} x {X.shape[1]}"
          f"{', 0 = missing' if missing else ''}); seeds {args.seeds}; {executor.name}")
    try:
        runs = course_grid(X, args.K, args.seeds, method=method, out=args.out, executor=executor,
                           progress=not args.no_progress)
    finally:
        executor.close()
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
        seed, run = best_runs[K]
        filled = gmm.fill_matrix(X, run.mixture)
        rated = gold != 0
        print(f"RMSE of the filled matrix (best K={K}, seed {seed}) against {args.data}_complete:")
        print(f"  over all entries (the course's figure): {gmm.rmse(gold, filled):.10f}")
        print(f"  over the missing entries only:          {gmm.rmse(gold, filled, (X == 0) & rated):.10f}")
        print("  (the all-entries figure is flattered: observed entries are copied, error 0.)")
        if (~rated).any():
            print(f"  note: {int((~rated).sum())} entries of {args.data}_complete are 0 (not rated) and are left "
                  "out of the missing-only figure; the course's all-entries figure includes them.")
    if args.plot:
        if X.shape[1] != 2:
            raise UsageError("--plot draws 2-D data only (e.g. --data toy)")
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        from inference.plots import plot_mixture, save_figure

        for K, (seed, run) in best_runs.items():
            fig = plot_mixture(X, run.mixture, run.post, title=f"{args.method}, K={K}, seed {seed}, "
                                                                f"{objective} {run.objective:.4f}")
            print(f"wrote {save_figure(fig, Path(args.plot) / f'{args.method}_K{K}.png')}")
            plt.close(fig)
    return 0


def cmd_select(args: argparse.Namespace) -> int:
    """CAVI over K x seeds; the best ELBO per K, the K it chooses, and a plot."""
    import pandas as pd

    from inference.selection import best_per_K, elbo_grid, plot_grid

    model = _model(args.model, min(args.Ks), args.hyper, _extra(args))
    data = _data(args.model, args.data, args)
    executor = _executor(args)
    print(f"CAVI on {args.model} ({data!r}): K {args.Ks} x seeds {args.seeds}; {executor.name}")
    try:
        runs = elbo_grid(model, data, args.Ks, args.seeds, num_iters=args.iters or 500, tol=args.tol, out=args.out,
                         executor=executor, progress=not args.no_progress)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    finally:
        executor.close()
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


def cmd_data(args: argparse.Namespace) -> int:
    from models.datasets import SHA256, DataFileError, data_path

    for key in SHA256:
        try:
            print(f"{key:40s} {data_path(key)}")
        except DataFileError as exc:
            print(f"{key:40s} MISSING: {exc}")
    return 0


def cmd_benchmark(args: argparse.Namespace) -> int:
    from inference.mf_benchmark import Settings, benchmark, summary_table

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
    from inference.sweep import get_executor

    executor = get_executor(args.scheduler or "serial", workers=args.workers)
    try:
        rows = benchmark(args.data, methods, args.Ks, settings, out=args.out, progress=not args.no_progress,
                         on_row=show, executor=executor)
    finally:
        executor.close()
    print(summary_table(rows))
    if args.out:
        print(f"wrote {Path(args.out) / 'benchmark.csv'}, {Path(args.out) / 'benchmark.md'}")
    return 0


CALIBRATION_SIZES = {"poisson-mf": (4, 5), "bayes-gmm": (10, 1), "bayes-gmm-full": (10, 2), "gaussian-mf": (4, 3, 0.7)}
CALIBRATION_SAMPLER = {"poisson-mf": (200, 10), "bayes-gmm": (100, 3), "bayes-gmm-full": (100, 3), "gaussian-mf": (100, 2)}


def _calibration_model(args: argparse.Namespace) -> Any:
    extra = _extra(args)
    if args.model == "gaussian-mf":
        extra.update(center=False, noise_prior=extra["noise_prior"] or (3.0, 1.0))
    return _model(args.model, args.K, args.hyper, extra)


def _size(args: argparse.Namespace) -> tuple:
    default = CALIBRATION_SIZES.get(args.model)
    if args.size is None:
        return default
    if len(args.size) != len(default):
        raise UsageError(f"--size for {args.model} takes {len(default)} numbers, like {' '.join(map(str, default))}")
    return tuple(float(v) if isinstance(d, float) else int(v) for v, d in zip(args.size, default))


def cmd_sbc(args: argparse.Namespace) -> int:
    import time

    from inference.calibration import sbc
    from inference.sweep import get_executor

    model = _calibration_model(args)
    warmup, thin = CALIBRATION_SAMPLER[args.model]
    executor = get_executor(args.scheduler, workers=args.workers)
    start = time.perf_counter()
    try:
        res = sbc(model, args.method, num_replications=args.replications, size=_size(args), num_draws=args.draws,
                  warmup=args.warmup or warmup, thin=args.thin or thin, bins=args.bins, seed=args.seed,
                  executor=executor, out=Path(args.out) / "replications" if args.out else None,
                  progress=not args.no_progress)
    finally:
        executor.close()
    wall = time.perf_counter() - start
    print(f"SBC of {args.method} on {args.model} ({res.label}): {args.replications} replications, {res.num_draws} "
          f"draws each, {wall:.1f} s on {executor.name}")
    for k, p in res.pvalues.items():
        print(f"  {k:>16s}  chi-square uniformity p = {p:.4f}")
    print(f"  smallest p x {len(res.pvalues)} (Bonferroni) = {res.min_pvalue_bonferroni:.4f}"
          + ("   <- not uniform: the sampler or a derivation is suspect" if res.min_pvalue_bonferroni < 0.01 else ""))
    if args.out:
        path = Path(args.out) / f"sbc_{args.model}_{args.method}.png"
        res.plot(path)
        print(f"wrote {path}")
    return 0


def cmd_geweke(args: argparse.Namespace) -> int:
    import pandas as pd

    from inference.calibration import geweke

    res = geweke(_calibration_model(args), _size(args), num_marginal=args.marginal, num_successive=args.successive,
                 seed=args.seed, progress=not args.no_progress)
    with pd.option_context("display.width", 200, "display.precision", 4):
        print(res.table.to_string(index=False))
    print(f"max |z| = {res.max_abs_z:.2f}" + ("   <- the Gibbs sweep does not leave the posterior invariant"
                                              if res.max_abs_z > 4 else ""))
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="inferlab", description="Bayesian latent-variable models, fitted every way.")
    sub = p.add_subparsers(dest="command", required=True)

    def common(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("model", help=f"model name ({', '.join(MODEL_NAMES)})")
        sp.add_argument("--data", default="synthetic",
                        help="data set name (poisson-mf: synthetic, lastfm; bayes-gmm: synthetic, toy) or a file "
                             "(poisson-mf: .npy dense counts or .csv long format row,col,value; bayes-gmm: .npy or "
                             "whitespace-separated points, NaN = missing)")
        sp.add_argument("-K", type=int, default=None, help="number of factors (default: 40 for lastfm, 3 otherwise)")
        sp.add_argument("--hyper", nargs="*", default=[], metavar="NAME=VALUE",
                        help="hyperparameters, e.g. a_theta=1 b_theta=0.5")
        sp.add_argument("--seed", type=int, default=0)
        sp.add_argument("--out", default=None, help="output folder")
        sp.add_argument("--rows", type=int, default=None, help="synthetic data: rows (default 20 for poisson-mf, "
                                                               "100 for bayes-gmm)")
        sp.add_argument("--cols", type=int, default=None, help="synthetic data: columns (default 30; bayes-gmm: "
                                                               "dimensions, default 2)")
        sp.add_argument("--true-K", type=int, default=3, help="synthetic data: factors of the generating model")
        sp.add_argument("--iters", type=int, default=None, help="iterations (CAVI sweeps, SVI steps)")
        sp.add_argument("--samples", type=int, default=None, help="kept draws per chain (Gibbs, NUTS)")
        sp.add_argument("--no-progress", action="store_true", help="no progress bars")
        sp.add_argument("--fold", type=int, default=1, help="gaussian-mf on movielens-100k: official fold 1..5")
        sp.add_argument("--prior", choices=["bpmf", "fixed"], default="bpmf", help="gaussian-mf prior")
        sp.add_argument("--noise-prior", type=float, nargs=2, default=None, metavar=("A", "B"),
                        help="gaussian-mf: Gamma(A, B) prior on the noise precision (Gibbs samples it)")

    f = sub.add_parser("fit", help="fit one model by one method, print a summary and save the result")
    common(f)
    f.add_argument("--method", required=True, help="cavi, gibbs, svi, nuts or em (the posterior mode)")
    f.add_argument("--chains", type=int, default=2, help="chains (Gibbs, NUTS)")
    f.add_argument("--init", choices=["default", "reference"], default=None,
                   help="CAVI initialisation; 'reference' reproduces the course (ELBO at uniform lambda first, "
                        "then after each eta update)")
    f.add_argument("--recommend", type=int, default=None, metavar="USER",
                   help="gaussian-mf on movielens-100k: print the top 10 unrated movies for this 0-based user, "
                        "with posterior sd, predictive sd and a 90%% interval")
    f.add_argument("--float32", action="store_true", help="float32 instead of float64 (closed-form methods)")
    f.add_argument("--device", default="cpu", help="torch device for closed-form methods (cpu, cuda)")
    f.set_defaults(func=cmd_fit)

    c = sub.add_parser("compare", help="fit several methods on one data set and tabulate them")
    common(c)
    c.add_argument("--methods", default=None, help="comma-separated from cavi, gibbs, svi, nuts, em (default: all "
                                                   "five on synthetic data, cavi,gibbs,svi,em otherwise)")
    c.set_defaults(func=cmd_compare)

    def sweep_options(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--scheduler", default=None, help="where the K x seeds runs go: 'local' processes (default), "
                                                          "'serial', or a Dask scheduler tcp://HOST:PORT")
        sp.add_argument("--workers", type=int, default=None, help="local processes (default: one per core)")
        if not any(a.dest == "out" for a in sp._actions):
            sp.add_argument("--out", default=None, help="folder: runs/ (one JSON per finished run: a rerun skips "
                                                        "them), runs.csv and the criterion-vs-K plot")
        if not any(a.dest == "no_progress" for a in sp._actions):
            sp.add_argument("--no-progress", action="store_true", help="no progress bar")

    e = sub.add_parser("em", help="the course's K-means / EM (spherical GMM) over K and seeds")
    e.add_argument("data", help="netflix, test, toy, or a whitespace-separated matrix file (0 = missing)")
    e.add_argument("--K", type=int, nargs="+", required=True, help="numbers of components, e.g. --K 1 12")
    e.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    e.add_argument("--method", choices=["em", "kmeans"], default="em")
    e.add_argument("--plot", default=None, metavar="DIR", help="write the course's mixture plot per K (2-D data)")
    sweep_options(e)
    e.set_defaults(func=cmd_em)

    se = sub.add_parser("select", help="choose K by the CAVI ELBO over a K x seeds grid (any model with CAVI)")
    common(se)
    se.add_argument("--K", dest="Ks", type=int, nargs="+", required=True, help="values of K, e.g. --K 1 2 3 4 5")
    se.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    se.add_argument("--tol", type=float, default=1e-8, help="CAVI relative ELBO tolerance")
    sweep_options(se)
    se.set_defaults(func=cmd_select)

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

    def calibration(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("model", help=f"model name ({', '.join(MODEL_NAMES)})")
        sp.add_argument("-K", type=int, default=2)
        sp.add_argument("--hyper", nargs="*", default=[], metavar="NAME=VALUE")
        sp.add_argument("--prior", choices=["bpmf", "fixed"], default="fixed", help="gaussian-mf prior")
        sp.add_argument("--noise-prior", type=float, nargs=2, default=None, metavar=("A", "B"),
                        help="gaussian-mf: Gamma(A, B) on the noise precision (default 3 1)")
        sp.add_argument("--size", nargs="+", default=None,
                        help="problem size drawn from the prior: N M (poisson-mf), n d (mixtures), N M fraction "
                             "(gaussian-mf); small by default")
        sp.add_argument("--seed", type=int, default=0)
        sp.add_argument("--no-progress", action="store_true")

    sb = sub.add_parser("sbc", help="simulation-based calibration of a sampler (rank histograms, uniformity tests)")
    calibration(sb)
    sb.add_argument("--method", choices=["gibbs", "nuts"], default="gibbs")
    sb.add_argument("--replications", type=int, default=200)
    sb.add_argument("--draws", type=int, default=99, help="posterior draws per replication (bins must divide draws+1)")
    sb.add_argument("--bins", type=int, default=10)
    sb.add_argument("--warmup", type=int, default=None)
    sb.add_argument("--thin", type=int, default=None)
    sb.add_argument("--scheduler", default=None,
                    help="'local' processes (default), 'serial', or a Dask scheduler address tcp://HOST:PORT")
    sb.add_argument("--workers", type=int, default=None, help="local processes (default: one per core)")
    sb.add_argument("--out", default=None, help="folder: replications/ (resumable) and the rank-histogram plot")
    sb.set_defaults(func=cmd_sbc)

    gw = sub.add_parser("geweke", help="Geweke's joint-distribution test of a Gibbs sampler")
    calibration(gw)
    gw.add_argument("--marginal", type=int, default=3000, help="marginal-conditional draws")
    gw.add_argument("--successive", type=int, default=6000, help="successive-conditional sweeps")
    gw.set_defaults(func=cmd_geweke)

    d = sub.add_parser("data", help="show where each data file is found (downloading missing ones)")
    d.set_defaults(func=cmd_data)
    return p


def main(argv: list[str] | None = None) -> int:
    from models.datasets import DataFileError

    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "K", None) is None and hasattr(args, "model"):
        args.K = 40 if args.data == "lastfm" else 3
    if hasattr(args, "rows") and args.rows is None:
        args.rows = 100 if args.model.startswith("bayes-gmm") else 20
    if hasattr(args, "cols") and args.cols is None:
        args.cols = 2 if args.model.startswith("bayes-gmm") else 30
    if getattr(args, "iters", None) is None and getattr(args, "command", "") == "fit":
        args.iters = 200
    try:
        return args.func(args)
    except (UsageError, ValueError, TypeError, DataFileError, FileNotFoundError) as exc:
        print(f"inferlab: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("inferlab: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
