"""Model selection over seeds x K grids, run through the sweep executor (inference.workflows.sweep).

Two criteria, one machinery:
- ``course_grid``: the course's K-means / EM runs (models.course.gmm) over K and seeds, with the BIC of the best run per K;
- ``elbo_grid``: CAVI on any Bayesian model over K and seeds, the best ELBO per K (a lower bound on log p(X | K); an
  ELBO comparison across K is the variational analogue of comparing log evidences).
Every (K, seed) run is one task carrying its own seed, so results do not depend on where they run; with ``out``
each finished run is written at once and a rerun skips it.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["course_grid", "elbo_grid", "course_task", "elbo_task", "best_per_K", "plot_grid"]


def course_task(X: np.ndarray, K: int, seed: int, method: str) -> dict:
    """One course run: K-means or EM (complete data, or with 0 = missing when ``method`` is "em_missing") from the
    course's initialisation for (K, seed)."""
    from models.course import gmm

    fn = {"kmeans": gmm.kmeans, "em": gmm.em_complete, "em_missing": gmm.em_missing}[method]
    t0 = time.perf_counter()
    try:
        run = fn(X, gmm.init(X, K, seed)[0])
    except gmm.DegenerateMixture as exc:
        raise gmm.DegenerateMixture(f"{method} with K={K}, seed {seed}: {exc}") from None
    out = {"K": K, "seed": seed, "objective": float(run.objective), "iterations": int(run.iterations),
           "seconds": time.perf_counter() - t0, "mu": run.mixture.mu.tolist(), "var": run.mixture.var.tolist(),
           "p": run.mixture.p.tolist()}
    if method != "kmeans":
        out["bic"] = float(gmm.bic(X, run.mixture, run.objective))
    return out


def elbo_task(model: Any, data: Any, K: int, seed: int, num_iters: int, tol: float | None) -> dict:
    """One CAVI fit of ``model`` with K components/factors from ``seed``: its final ELBO (every constant included)."""
    from inference.cavi import fit_cavi

    m = dataclasses.replace(model, K=K)
    res = fit_cavi(m, data, seed=seed, num_iters=num_iters, tol=tol, num_samples=20, progress=False)
    return {"K": K, "seed": seed, "elbo": float(res.objective), "iterations": int(res.attrs["num_iters"]),
            "converged": bool(res.attrs["converged"]), "seconds": float(res.wall_time),
            "monotone_violations": int(res.attrs["monotone_violations"])}


def _grid(fn, common: dict, Ks: list[int], seeds: list[int], *, out, executor, progress, desc, on_result=None,
          overwrite=False):
    from inference.workflows.sweep import run_sweep

    _check_grid(Ks, seeds)
    tasks = {f"K{K}-seed{s}": dict(common, K=K, seed=s) for K in Ks for s in seeds}
    results = run_sweep(fn, tasks, out=Path(out) / "runs" if out is not None else None, executor=executor,
                        progress=progress, desc=desc, on_result=on_result, overwrite=overwrite)
    return pd.DataFrame(list(results.values()))


def course_grid(X: np.ndarray, Ks: list[int], seeds: list[int], *, method: str = "em", out=None, executor=None,
                progress: bool = True, overwrite: bool = False) -> pd.DataFrame:
    """The course's runs for every (K, seed). Returns one row per run: K, seed, objective (LL, or the K-means
    cost), iterations, seconds, the mixture (mu, var, p as lists) and, for EM, the BIC."""
    if method not in ("kmeans", "em", "em_missing"):
        raise ValueError(f"method must be 'kmeans', 'em' or 'em_missing', got {method!r}")
    return _grid(course_task, {"X": np.asarray(X, dtype=np.float64), "method": method}, Ks, seeds, out=out,
                 executor=executor, progress=progress, desc=f"{method} K x seeds", overwrite=overwrite)


def elbo_grid(model: Any, data: Any, Ks: list[int], seeds: list[int], *, num_iters: int = 500,
              tol: float | None = 1e-8, out=None, executor=None, progress: bool = True,
              overwrite: bool = False) -> pd.DataFrame:
    """CAVI's final ELBO for every (K, seed). ``model`` is any model with CAVI and a K field (its other
    hyperparameters are kept). One row per run: K, seed, elbo, iterations, converged, seconds."""
    from models.protocol import CAVI, Model, require

    if not dataclasses.is_dataclass(model) or "K" not in {f.name for f in dataclasses.fields(model)}:
        raise ValueError(f"model must be an inferlab model with a K field, got {model!r}")
    require(model, CAVI, Model, method="elbo_grid")
    data = model.prepare(data)
    return _grid(elbo_task, {"model": model, "data": data, "num_iters": num_iters, "tol": tol}, Ks, seeds, out=out,
                 executor=executor, progress=progress, desc=f"CAVI {model.name} K x seeds", overwrite=overwrite)


def _check_grid(Ks: list[int], seeds: list[int]) -> None:
    if not Ks or any(isinstance(K, bool) or not isinstance(K, (int, np.integer)) or K < 1 for K in Ks):
        raise ValueError(f"K values must be integers >= 1, got {Ks!r}")
    if not seeds or any(isinstance(s, bool) or not isinstance(s, (int, np.integer)) or s < 0 for s in seeds):
        raise ValueError(f"seeds must be non-negative integers, got {seeds!r}")
    if len(set(Ks)) != len(Ks) or len(set(seeds)) != len(seeds):
        raise ValueError(f"K values and seeds must not repeat, got K {Ks!r}, seeds {seeds!r}")


def best_per_K(runs: pd.DataFrame, column: str, maximise: bool = True) -> pd.DataFrame:
    """The best run of each K by ``column`` (ties: the lowest seed), with the spread over seeds."""
    order = runs.sort_values(["K", column, "seed"], ascending=[True, not maximise, True])
    best = order.groupby("K", sort=True).head(1).set_index("K")
    spread = runs.groupby("K")[column].agg(["min", "max"])
    best[f"{column}_worst_seed"] = spread["min" if maximise else "max"]
    return best.reset_index()


def plot_grid(runs: pd.DataFrame, column: str, path: str | Path, *, maximise: bool = True, title: str = ""):
    """Every seed's value against K (dots) and the best per K (line), the chosen K marked."""
    from inference.workflows.plots import save_figure, use_agg

    use_agg()
    import matplotlib.pyplot as plt

    best = best_per_K(runs, column, maximise)
    pick = best.loc[best[column].idxmax() if maximise else best[column].idxmin()]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.scatter(runs["K"], runs[column], s=12, alpha=0.6, color="C0", label="each seed")
    ax.plot(best["K"], best[column], color="C1", marker="o", label="best seed per K")
    ax.axvline(pick["K"], color="k", ls="--", lw=0.8, label=f"chosen K = {int(pick['K'])}")
    ax.set(xlabel="K", ylabel=column, title=title, xticks=sorted(runs["K"].unique()))
    ax.legend(fontsize=8)
    return save_figure(fig, Path(path), close=True)
