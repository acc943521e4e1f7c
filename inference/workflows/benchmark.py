"""The Gaussian MF recommender benchmark: every method on the same splits, test RMSE, test log predictive
density per rating (Bayesian methods), fit time. Used by ``inferlab benchmark gaussian-mf`` and
benchmarks/gaussian_mf_bench.py.

Data sets:
    movielens-100k  the official folds u1..u5 (80,000 training / 20,000 test ratings each).
    netflix         the MITx 1200 x 1200 matrix: observed = the nonzero entries of netflix_incomplete, test = the
                    entries netflix_complete fills in (missing in incomplete, nonzero in complete; complete has
                    2,429 unfilled zeros, which are not ratings and are left out).
Methods (model settings in ``Settings``):
    gibbs       BPMF Gibbs (Normal-Wishart hyperpriors, alpha ~ Ga(a, b)).
    cavi        variational BPMF (the same model; NW and Gamma q).
    cavi-fixed  CAVI for the fixed isotropic prior with alpha ~ Ga(a, b): the model SVI fits, so ELBOs compare.
    svi         minibatch SVI of that model (reparameterised ELBO, analytic KL), Adam.
    als         ridge ALS-WR with biases, penalty tuned on 10% of the training ratings.
    funk        biased SGD (Surprise's SVD defaults, K=100 whatever the K list).
    svd         rank-K truncated SVD of the centred training matrix with missing entries at 0.
Predictions are clipped to the rating range for RMSE; the log predictive density is not clipped.
"""

from __future__ import annotations

import csv
import io
import math
import statistics
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from models._io import write_text
from models.data import RatingData, as_rating_data

__all__ = ["Settings", "BENCH_METHODS", "BENCH_DATA", "splits", "run_method", "benchmark", "summary_table"]

BENCH_METHODS = ("gibbs", "cavi", "cavi-fixed", "svi", "als", "funk", "svd")
BENCH_DATA = ("movielens-100k", "netflix")
RATING_RANGE = (1.0, 5.0)


@dataclass
class Settings:
    """Method settings (the defaults are the ones the reported figures use)."""

    noise_prior: tuple[float, float] = (1.0, 1.0)
    gibbs_samples: int = 400
    gibbs_warmup: int = 50
    cavi_iters: int = 200
    cavi_tol: float = 1e-7
    svi_epochs: int = 20
    svi_batch: int = 1000
    svi_lr: float = 0.02
    funk_K: int = 100
    funk_epochs: int = 20
    seed: int = 0


def splits(name: str) -> Iterator[tuple[str, RatingData, RatingData]]:
    """(split label, train, test) for a benchmark data set."""
    if name == "movielens-100k":
        from models.datasets import load_movielens_100k

        for f, (train, test) in enumerate(load_movielens_100k().folds, start=1):
            yield f"u{f}", as_rating_data(train, name=f"u{f}.base"), as_rating_data(test, name=f"u{f}.test")
    elif name == "netflix":
        from models.datasets import load_netflix

        nf = load_netflix("netflix")
        inc, comp = nf.incomplete, nf.complete
        rows, cols = np.nonzero(inc)
        train = as_rating_data(_triplets(rows, cols, inc[rows, cols], inc.shape), name="netflix observed")
        rows, cols = np.nonzero((inc == 0) & (comp != 0))
        test = as_rating_data(_triplets(rows, cols, comp[rows, cols], inc.shape), name="netflix filled-in")
        yield "missing", train, test
    else:
        raise ValueError(f"data must be one of {', '.join(BENCH_DATA)}, got {name!r}")


def _triplets(rows, cols, values, shape):
    from models.datasets import Ratings

    return Ratings(rows.astype(np.int64), cols.astype(np.int64), values.astype(np.float64), shape)


def _rmse(pred: np.ndarray, test: RatingData) -> float:
    return float(np.sqrt(np.mean((np.clip(pred, *RATING_RANGE) - test.values.numpy()) ** 2)))


def run_method(method: str, K: int, train: RatingData, test: RatingData, s: Settings,
               progress: bool = False) -> dict[str, float]:
    """Fit one method on ``train`` and score it on ``test``: test_rmse, test_lpd (NaN for point estimates),
    fit_s, and method-specific figures (ms_per_sweep, elbo_per_rating, iterations)."""
    from inference.baselines import als_sparse, funk_svd, truncated_svd, tune_als
    from inference.cavi import fit_cavi
    from inference.gibbs import fit_gibbs
    from inference.svi import fit_svi
    from models.gaussian_mf import GaussianMF, heldout_scores, predict

    row: dict[str, float | None] = {"test_lpd": None}  # (None: not applicable; NaN would be a failed fit)
    t0 = time.perf_counter()
    if method in ("gibbs", "cavi", "cavi-fixed", "svi"):
        prior = "bpmf" if method in ("gibbs", "cavi") else "fixed"
        model = GaussianMF(K=K, prior=prior, noise_prior=s.noise_prior)
        if method == "gibbs":
            res = fit_gibbs(model, train, seed=s.seed, num_samples=s.gibbs_samples, warmup=s.gibbs_warmup,
                            num_chains=1, progress=progress)
            row["ms_per_sweep"] = 1e3 * float(np.median(np.diff(np.asarray(res.trace["seconds"][0]))))
        elif method == "svi":
            per_epoch = math.ceil(len(train) / s.svi_batch)
            res = fit_svi(model, train, seed=s.seed, num_iters=s.svi_epochs * per_epoch, subsample_size=s.svi_batch,
                          lr=s.svi_lr, eval_every=per_epoch, progress=progress)
            row["iterations"] = s.svi_epochs
        else:
            res = fit_cavi(model, train, seed=s.seed, num_iters=s.cavi_iters, tol=s.cavi_tol, progress=progress)
            row["iterations"] = res.attrs["num_iters"]
        fit_s = time.perf_counter() - t0
        if "elbo" in res.attrs:
            row["elbo_per_rating"] = res.attrs["elbo"] / len(train)
        mean, _ = predict(model, train, res, test.rows, test.cols)
        row.update(test_rmse=_rmse(mean, test), test_lpd=heldout_scores(model, train, res, test)["heldout_lpd_per_rating"],
                   fit_s=fit_s)
        return row
    if method == "als":
        lam, _ = tune_als(train, K, seed=s.seed, clip=RATING_RANGE)
        fit = als_sparse(train, K, lam=lam, seed=s.seed)
        row["lam"] = lam
    elif method == "funk":
        fit = funk_svd(train, s.funk_K, epochs=s.funk_epochs, seed=s.seed)
    elif method == "svd":
        mu = float(train.values.mean())
        A = np.zeros(train.shape)
        A[train.rows.numpy(), train.cols.numpy()] = train.values.numpy() - mu
        f = truncated_svd(A, K)
        pred = mu + np.einsum("nk,nk->n", f.U[test.rows.numpy()], f.V[test.cols.numpy()])
        return dict(row, test_rmse=_rmse(pred, test), fit_s=time.perf_counter() - t0)
    else:
        raise ValueError(f"method must be one of {', '.join(BENCH_METHODS)}, got {method!r}")
    fit_s = time.perf_counter() - t0
    return dict(row, test_rmse=_rmse(fit.predict(test.rows.numpy(), test.cols.numpy()), test), fit_s=fit_s)


def benchmark_task(data: str, method: str, K: int, split: str, train: RatingData, test: RatingData,
                   s: Settings) -> dict:
    """One (method, K, split) fit and its scores: a sweep task (runs on any executor)."""
    row = {"data": data, "method": method, "K": K, "split": split}
    row.update(run_method(method, K, train, test, s))
    return row


def benchmark(data: str, methods: list[str], Ks: list[int], s: Settings, *, out: str | Path | None = None,
              progress: bool = True, on_row: Callable[[dict], None] | None = None, executor: Any = None,
              overwrite: bool = False) -> list[dict]:
    """Every (method, K, split) through inference.workflows.sweep (``funk`` runs once, at its own K). The default executor
    runs the fits one after another in this process, so that fit times are not distorted by each other; pass
    get_executor("local") or a Dask address for throughput. With ``out``, every finished fit is kept in
    out/fits/<method>-K<K>-<split>.json and a rerun skips it; out/benchmark.csv and .md are written at the end."""
    from inference.workflows.sweep import get_executor, run_sweep

    bad = [m for m in methods if m not in BENCH_METHODS]
    if bad:
        raise ValueError(f"unknown method(s) {bad}; available: {', '.join(BENCH_METHODS)}")
    if not Ks or any((not isinstance(K, int)) or K < 1 for K in Ks):
        raise ValueError(f"K must be a non-empty list of integers >= 1, got {Ks!r}")
    data_splits = list(splits(data))
    tasks = {f"{m}-K{K}-{label}": dict(data=data, method=m, K=K, split=label, train=train, test=test, s=s)
             for m in methods for K in (Ks if m != "funk" else [s.funk_K]) for label, train, test in data_splits}
    results = run_sweep(benchmark_task, tasks, out=Path(out) / "fits" if out is not None else None,
                        executor=executor if executor is not None else get_executor("serial"), progress=progress,
                        desc=f"benchmark {data}", on_result=(lambda key, row: on_row(row)) if on_row else None,
                        overwrite=overwrite)
    rows = list(results.values())
    if out is not None:
        write_results(rows, s, Path(out))
    return rows


def summary_table(rows: list[dict]) -> str:
    """Markdown: one line per (method, K): per-split RMSE, mean RMSE, mean test LPD, mean fit s, ms per sweep."""
    labels = list(dict.fromkeys(r["split"] for r in rows))
    head = "| method | K | " + " | ".join(f"RMSE {lab}" for lab in labels) + \
        " | mean RMSE | test log pred. density / rating | ELBO / rating | fit s (mean) | ms / sweep |"
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for (method, K) in dict.fromkeys((r["method"], r["K"]) for r in rows):
        rs = [r for r in rows if r["method"] == method and r["K"] == K]

        def mean(key):
            v = [r[key] for r in rs if r.get(key) is not None and not math.isnan(r[key])]
            return statistics.mean(v) if v else math.nan

        def fmt(x, spec):
            return "-" if math.isnan(x) else format(x, spec)
        lines.append(f"| {method} | {K} | " + " | ".join(f"{r['test_rmse']:.4f}" for r in rs)
                     + f" | {mean('test_rmse'):.4f} | {fmt(mean('test_lpd'), '.4f')} | "
                     f"{fmt(mean('elbo_per_rating'), '.4f')} | {mean('fit_s'):.1f} | {fmt(mean('ms_per_sweep'), '.1f')} |")
    return "\n".join(lines)


def write_results(rows: list[dict], s: Settings, out: Path) -> list[Path]:
    """out/benchmark.csv (every row) and out/benchmark.md (settings and the summary), each written atomically."""
    keys = list(dict.fromkeys(k for r in rows for k in r))
    table = io.StringIO()
    w = csv.DictWriter(table, fieldnames=keys, lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    return [write_text(out / "benchmark.csv", table.getvalue()),
            write_text(out / "benchmark.md", f"settings: {asdict(s)}\n\n{summary_table(rows)}\n")]


def seconds_to_reach(trace_seconds: np.ndarray, trace_elbo: np.ndarray, target: float) -> float:
    """First time at which a (closed-form) ELBO trace reaches ``target`` (NaN entries skipped; inf if never)."""
    ok = np.nonzero(np.nan_to_num(trace_elbo, nan=-np.inf) >= target)[0]
    return float(trace_seconds[ok[0]]) if len(ok) else math.inf

