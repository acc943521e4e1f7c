"""Calibration of samplers and derivations, for any model with ``simulate`` / ``resimulate`` / ``invariants``.

Simulation-based calibration (Talts et al. 2018): draw (theta*, y) from the prior and the likelihood, run the
sampler on y, and rank each invariant quantity f(theta*) among L posterior draws f(theta_l). With a correct
sampler the rank is uniform on {0, ..., L}; a chi-square test on B bins gives a p-value per quantity. Draws are
thinned so that they are close to independent (autocorrelation alone makes the histogram U-shaped).

Geweke (2004) joint-distribution test: the marginal-conditional simulator draws (theta, y) independently from the
prior; the successive-conditional simulator alternates y ~ p(y | theta) and one Gibbs sweep theta ~ K(theta | y).
Both have the prior as the marginal of theta iff the sweep leaves p(theta | y) invariant; the means of test
functions g(theta) are compared by z-scores with Monte Carlo errors from the effective sample size.

VSBC (Yao et al. 2018) for CAVI: the posterior quantile of the truth under q, over replications; a correct and
symmetric approximation gives a distribution symmetric about 1/2 (tested by comparing p with 1 - p).

The model supplies ``simulate(size, generator) -> (state, data)``, ``resimulate(state, data, generator) -> data``
(the Simulates capability), ``invariants(data, **state)`` and the method's own capability; nothing here is
model-specific.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from models.protocol import CAVI, Gibbs, Invariants, Model, PyroModel, Simulates, require

__all__ = ["sbc", "sbc_replication", "SBCResult", "geweke", "GewekeResult", "vsbc", "vsbc_replication",
           "vsbc_symmetry_pvalues", "quantities"]


def quantities(model: Any, data: Any, fields: dict[str, torch.Tensor], max_per_key: int = 3) -> dict[str, np.ndarray]:
    """Scalar invariant quantities of a batch of states: {"pred[0]": (S,), ..., "log_joint": (S,)}: the first
    ``max_per_key`` entries of each invariant the model declares. fields: state fields with a leading draw dim."""
    out = {}
    for key, value in model.invariants(data, **fields).items():
        flat = value.reshape(value.shape[0], -1).detach().cpu().numpy()
        if flat.shape[1] == 1:
            out[key] = flat[:, 0]
        else:
            for j in range(min(max_per_key, flat.shape[1])):
                out[f"{key}[{j}]"] = flat[:, j]
    return out


def sbc_replication(model: Any, method: str, seed: int, size: tuple, num_draws: int = 99, warmup: int = 200,
                    thin: int = 5, max_per_key: int = 3, relabel: bool = False) -> dict:
    """One SBC replication: ranks of the true invariant quantities among ``num_draws`` thinned posterior draws.
    Runs anywhere (a sweep task): one torch thread, all randomness from ``seed``.

    relabel: also rank the mixture's component parameters (pi[k], mu[k, j]) after pivotal relabelling. The pivot is
    the last state of an independent Gibbs chain on the same y (seeded apart), so it depends on y but not on which of
    the truth and the L draws is which: relabelling is then one fixed map applied to all L + 1 of them, and their
    exchangeability given y, which makes the rank uniform, survives. (A pivot picked among the kept draws would
    single one out.)"""
    from inference.gibbs import fit_gibbs
    from inference.nuts import fit_nuts

    torch.set_num_threads(1)
    g = torch.Generator().manual_seed(seed)
    state, data = model.simulate(size, g)
    truth = quantities(model, data, {k: v[None] for k, v in state._asdict().items()}, max_per_key)
    if method == "gibbs":
        res = fit_gibbs(model, data, seed=seed, num_samples=num_draws, warmup=warmup, thin=thin, num_chains=1,
                        progress=False)
    elif method == "nuts":
        res = fit_nuts(model, data, seed=seed, num_samples=num_draws * thin, warmup=warmup, num_chains=1,
                       progress=False)
    else:
        raise ValueError(f"method must be 'gibbs' or 'nuts', got {method!r}")
    fields = {k: torch.as_tensor(np.asarray(res.posterior[k]))[0] for k in state._fields if k in res.posterior}
    if method == "nuts":
        fields = {k: v[thin - 1::thin] for k, v in fields.items()}
    L = len(next(iter(fields.values())))
    for k in state._fields:  # fields the sampler does not sample are constants of the model (fixed hyperparameters)
        if k not in fields:
            fields[k] = getattr(state, k).expand((L,) + getattr(state, k).shape)
    draws = quantities(model, data, fields, max_per_key)
    if relabel:
        from inference.workflows.relabel import component_quantities

        pivot = fit_gibbs(model, data, seed=seed + 2**40, num_samples=1, warmup=warmup, num_chains=1, progress=False)
        stack = {k: np.concatenate([np.asarray(pivot.posterior[k])[0], np.asarray(getattr(state, k))[None],
                                    fields[k].numpy()]) for k in ("pi", "mu")}
        for k, v in component_quantities(stack["pi"], stack["mu"], pivot=0, max_per_key=max_per_key).items():
            truth[k], draws[k] = v[1:2], v[2:]
    rank_rng = np.random.default_rng(seed)
    ranks = {}
    for k, t in truth.items():
        below, ties = (draws[k] < t[0]).sum(), (draws[k] == t[0]).sum()
        ranks[k] = int(below + rank_rng.integers(0, ties + 1))  # ties broken uniformly
    return {"ranks": ranks, "num_draws": len(next(iter(draws.values())))}


@dataclass
class SBCResult:
    """ranks: {quantity: (R,) int array in 0..L}; L draws per replication; p-values of the chi-square
    uniformity test on ``bins`` equal bins."""

    ranks: dict[str, np.ndarray]
    num_draws: int
    bins: int
    label: str = ""

    @property
    def pvalues(self) -> dict[str, float]:
        from scipy.stats import chisquare

        out = {}
        for k, r in self.ranks.items():
            counts = np.bincount(r * self.bins // (self.num_draws + 1), minlength=self.bins)
            out[k] = float(chisquare(counts).pvalue)
        return out

    @property
    def min_pvalue_bonferroni(self) -> float:
        """The smallest p-value times the number of quantities (capped at 1)."""
        p = self.pvalues
        return min(1.0, min(p.values()) * len(p))

    def plot(self, path=None, ax_cols: int = 4):
        """Rank histograms with the 99% band of a uniform histogram (binomial quantiles per bin)."""
        import matplotlib.pyplot as plt
        from scipy.stats import binom

        from inference.workflows.plots import save_figure

        names = list(self.ranks)
        rows = math.ceil(len(names) / ax_cols)
        fig, axes = plt.subplots(rows, min(ax_cols, len(names)), figsize=(3.2 * min(ax_cols, len(names)), 2.4 * rows),
                                 squeeze=False)
        R = len(next(iter(self.ranks.values())))
        lo, hi = binom.ppf(0.005, R, 1 / self.bins), binom.ppf(0.995, R, 1 / self.bins)
        pv = self.pvalues
        for ax, name in zip(axes.flat, names):
            counts = np.bincount(self.ranks[name] * self.bins // (self.num_draws + 1), minlength=self.bins)
            ax.axhspan(lo, hi, color="0.85")
            ax.bar(np.arange(self.bins), counts, width=0.9)
            ax.set_title(f"{name}  p={pv[name]:.3f}", fontsize=8)
            ax.set_xticks([])
        for ax in list(axes.flat)[len(names):]:
            ax.axis("off")
        fig.suptitle(f"SBC rank histograms {self.label} ({R} replications, {self.num_draws} draws each)", fontsize=9)
        fig.tight_layout()
        if path is not None:
            save_figure(fig, path)
            plt.close(fig)
        return fig


def sbc(model: Any, method: str = "gibbs", *, num_replications: int = 200, size: tuple, num_draws: int = 99,
        warmup: int = 200, thin: int = 5, bins: int = 10, seed: int = 0, max_per_key: int = 3, executor: Any = None,
        out=None, progress: bool = True, overwrite: bool = False, relabel: bool = False) -> SBCResult:
    """Simulation-based calibration of ``method`` ("gibbs" or "nuts") on problems of ``size`` drawn from the
    model's prior; replications run through inference.workflows.sweep (resumable with ``out``). relabel (mixtures):
    also the relabelled component parameters (see sbc_replication)."""
    from inference.assemble import check_positive_int
    from inference.workflows.sweep import run_sweep

    if method not in ("gibbs", "nuts"):
        raise ValueError(f"method must be 'gibbs' or 'nuts', got {method!r}")
    require(model, Model, Simulates, Invariants, Gibbs if method == "gibbs" else PyroModel, method=f"sbc ({method})")
    check_positive_int("num_replications", num_replications)
    check_positive_int("num_draws", num_draws)
    if relabel and not all(hasattr(model, a) for a in ("precision_site", "classification_probs")):
        raise ValueError(f"relabel=True (--relabel) ranks relabelled mixture components; {model.name} is not a mixture")
    if (num_draws + 1) % bins:
        raise ValueError(f"bins ({bins}) must divide num_draws + 1 ({num_draws + 1}) so that the bins are equal")
    tasks = {f"rep-{r:05d}": dict(model=model, method=method, seed=seed * 1_000_003 + r, size=tuple(size),
                                  num_draws=num_draws, warmup=warmup, thin=thin, max_per_key=max_per_key,
                                  relabel=relabel)
             for r in range(num_replications)}
    results = run_sweep(sbc_replication, tasks, out=out, executor=executor, progress=progress,
                        desc=f"SBC {model.name} {method}", overwrite=overwrite)
    first = next(iter(results.values()))
    ranks = {k: np.array([res["ranks"][k] for res in results.values()]) for k in first["ranks"]}
    return SBCResult(ranks, first["num_draws"], bins, f"{model.name} {method}")


@dataclass
class GewekeResult:
    """Per test function: marginal-conditional and successive-conditional means, the z-score, and the
    successive chain's effective sample size."""

    table: Any  # pandas DataFrame

    @property
    def max_abs_z(self) -> float:
        return float(self.table["z"].abs().max())


def _test_functions(state: Any, max_per_field: int = 2) -> dict[str, float]:
    """g(theta): the first entries of every non-constant state field and their squares."""
    out = {}
    for name, value in state._asdict().items():
        flat = value.reshape(-1)
        for j in range(min(max_per_field, flat.numel())):
            out[f"{name}[{j}]"] = float(flat[j])
            out[f"{name}[{j}]^2"] = float(flat[j]) ** 2
    return out


def geweke(model: Any, size: tuple, *, num_marginal: int = 2000, num_successive: int = 20000, seed: int = 0,
           progress: bool = True):
    """Geweke's joint-distribution test of ``model.gibbs_sweep`` (see the module docstring)."""
    import pandas as pd
    from tqdm.auto import trange

    from inference.results import ess

    require(model, Model, Simulates, Gibbs, method="geweke")
    g = torch.Generator().manual_seed(seed)
    marginal = [_test_functions(model.simulate(size, g)[0]) for _ in trange(num_marginal, disable=not progress,
                                                                             desc="Geweke marginal-conditional")]
    state, data = model.simulate(size, g)
    successive = []
    for _ in trange(num_successive, disable=not progress, desc="Geweke successive-conditional"):
        data = model.resimulate(state, data, g)
        state = model.gibbs_sweep(data, state, g)
        successive.append(_test_functions(state))
    mc, sc = pd.DataFrame(marginal), pd.DataFrame(successive)
    rows, seen = [], []
    for col in mc.columns:
        a, b = mc[col].to_numpy(), sc[col].to_numpy()
        if a.std() == 0 and b.std() == 0:  # a constant (e.g. fixed hyperparameters): nothing to test
            continue
        if any(np.array_equal(a, mc[c].to_numpy()) and np.array_equal(b, sc[c].to_numpy()) for c in seen):
            continue  # the same function twice (y^2 = y for binary labels)
        seen.append(col)
        n_eff = 1.0 if b.std() == 0 else float(ess(b[None, :]))  # a chain that never moved has one draw's worth
        se = math.sqrt(a.var(ddof=1) / len(a) + b.var(ddof=1) / max(n_eff, 1.0))
        rows.append({"function": col, "marginal_mean": a.mean(), "successive_mean": b.mean(), "ess": n_eff,
                     "z": (a.mean() - b.mean()) / se})
    return GewekeResult(pd.DataFrame(rows))


def vsbc_replication(model: Any, seed: int, size: tuple, num_iters: int, num_samples: int, max_per_key: int) -> dict:
    """One VSBC replication: a problem from the prior, a CAVI fit, and per quantity the fraction of q's draws below
    the truth. Runs anywhere (a sweep task): one torch thread, all randomness from ``seed``."""
    from inference.cavi import fit_cavi

    torch.set_num_threads(1)
    state, data = model.simulate(size, torch.Generator().manual_seed(seed))
    truth = quantities(model, data, {k: v[None] for k, v in state._asdict().items()}, max_per_key)
    res = fit_cavi(model, data, seed=seed, num_iters=num_iters, num_samples=num_samples, progress=False)
    fields = {k: torch.as_tensor(np.asarray(res.posterior[k]))[0] for k in res.posterior if k in state._fields}
    fields.update({k: getattr(state, k).expand((num_samples,) + getattr(state, k).shape)
                   for k in state._fields if k not in fields})  # sites q does not model (fixed ones)
    draws = quantities(model, data, fields, max_per_key)
    return {"quantiles": {k: float((draws[k] < t[0]).mean()) for k, t in truth.items()}}


def vsbc(model: Any, *, num_replications: int, size: tuple, num_iters: int = 200, num_samples: int = 1000,
         seed: int = 0, max_per_key: int = 3, executor: Any = None, out=None,
         progress: bool = True, overwrite: bool = False) -> dict[str, np.ndarray]:
    """VSBC for CAVI (Yao et al. 2018): per quantity, the posterior quantile of the truth under q (the fraction of
    q's draws below it), over replications (R,). Symmetric about 1/2 when q's point estimates are unbiased;
    uniform when q is the exact posterior. Replications run through inference.workflows.sweep (resumable with ``out``;
    default executor: serial, CAVI fits are short)."""
    from inference.assemble import check_positive_int
    from inference.workflows.sweep import get_executor, run_sweep

    require(model, Model, Simulates, Invariants, CAVI, method="vsbc")
    check_positive_int("num_replications", num_replications)
    tasks = {f"rep-{r:05d}": dict(model=model, seed=seed * 1_000_003 + r, size=tuple(size), num_iters=num_iters,
                                  num_samples=num_samples, max_per_key=max_per_key) for r in range(num_replications)}
    results = run_sweep(vsbc_replication, tasks, out=out, executor=executor or get_executor("serial"),
                        progress=progress, desc=f"VSBC {model.name} cavi", overwrite=overwrite)
    keys = next(iter(results.values()))["quantiles"]
    return {k: np.array([res["quantiles"][k] for res in results.values()]) for k in keys}


def vsbc_symmetry_pvalues(quantiles: dict[str, np.ndarray]) -> dict[str, float]:
    """Per quantity, the two-sample Kolmogorov-Smirnov p-value of p against 1 - p (symmetry about 1/2)."""
    from scipy.stats import ks_2samp

    return {k: float(ks_2samp(p, 1 - p).pvalue) for k, p in quantiles.items()}
