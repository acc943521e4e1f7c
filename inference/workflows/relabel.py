"""Relabelling mixture draws under label switching: Stephens' KL algorithm, pivotal reordering, ECR.

A mixture's likelihood is the same under every permutation of its K component labels, so a sampler that mixes well
visits all K! labellings and the raw component draws (pi_k, mu_k, precision_k) are not meaningful per k. Relabelling
finds, for every draw s, the permutation that puts the draw's components in a common order; afterwards per-component
means, R-hat and ESS mean something. (R's label.switching package is the reference for these three methods.)

    perms = stephens(probs)                 # probs (S, n, K): p(z_u = k | theta_s, x); Stephens (2000)
    perms = pivotal(params, log_density)    # params (S, K, m), the pivot the draw of highest density; Marin et al. 2005
    perms = ecr(z, pivot_z, K)              # allocations z (S, n), a pivot allocation (n,); Papastamoulis and
                                            # Iliopoulos 2010
    relabelled = permute(draws, perms)      # any (S, K, ...) array, component axis 1
    out = relabel_mixture(model, data, result, method="stephens")   # a Gibbs / NUTS / CAVI result, end to end
    theta, eta, perms = align_poisson_mf(theta, eta)    # factorisations: factors aligned to a reference draw
    U, V, R = align_gaussian_mf(U, V)

Every method returns ``perms`` (S, K) of ints: ``perms[s, k]`` is the label in draw s that becomes label k, so that
``permute(x, perms)[s, k] = x[s, perms[s, k]]``. Each assignment is an exact linear assignment problem (the Hungarian
method, scipy.optimize.linear_sum_assignment), O(K^3) per draw.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["stephens", "pivotal", "ecr", "permute", "count_switches", "component_quantities", "relabel_mixture",
           "Relabelled", "METHODS",
           "mixture_report", "align_poisson_mf", "align_gaussian_mf", "poisson_factor_report", "gaussian_factor_report"]

METHODS = ("stephens", "pivotal", "ecr")

# Largest (draws x n x K x d) of classification probabilities computed in one batch.
_PROBS_BATCH = 4_000_000


def _assign(cost: np.ndarray) -> np.ndarray:
    """The permutation p (K,) minimising sum_k cost[k, p[k]]."""
    from scipy.optimize import linear_sum_assignment

    rows, cols = linear_sum_assignment(cost)
    perm = np.empty(cost.shape[0], dtype=np.int64)
    perm[rows] = cols
    return perm


def permute(x: np.ndarray, perms: np.ndarray) -> np.ndarray:
    """x (S, K, ...) with each draw's components reordered: out[s, k] = x[s, perms[s, k]]."""
    x = np.asarray(x)
    idx = perms.reshape(perms.shape + (1,) * (x.ndim - 2))
    return np.take_along_axis(x, np.broadcast_to(idx, perms.shape + x.shape[2:]), axis=1)


def _check(perms_shape: tuple[int, int], K: int) -> None:
    if perms_shape[1] != K or K < 1:
        raise ValueError(f"expected K = {K} components on axis 1, got shape {perms_shape}")


def pivotal(params: np.ndarray, log_density: np.ndarray | None = None, pivot: int | None = None) -> np.ndarray:
    """Pivotal reordering: each draw's components assigned to the pivot draw's by the Hungarian method on squared
    distances between component parameters, standardised per coordinate.

    Args:
        params: (S, K, m) component parameters per draw (e.g. means, with log weights or precisions appended).
        log_density: (S,) log posterior density (or log joint) per draw; the pivot is its maximiser.
        pivot: the index of the pivot draw (default: the argmax of ``log_density``, else draw 0).
    """
    P = np.asarray(params, dtype=np.float64)
    if P.ndim == 2:
        P = P[..., None]
    if P.ndim != 3:
        raise ValueError(f"params must be (S, K) or (S, K, m), got shape {np.shape(params)}")
    S, K, _ = P.shape
    if pivot is None:
        pivot = int(np.argmax(log_density)) if log_density is not None else 0
    if not 0 <= pivot < S:
        raise ValueError(f"pivot must be a draw index in [0, {S}), got {pivot}")
    scale = P.reshape(S * K, -1).std(0)
    Z = P / np.where(scale > 0, scale, 1.0)
    ref = Z[pivot]
    perms = np.empty((S, K), dtype=np.int64)
    for s in range(S):
        cost = ((ref[:, None, :] - Z[s][None, :, :]) ** 2).sum(-1)   # cost[k, l]: pivot's k against draw's l
        perms[s] = _assign(cost)
    return perms


def ecr(z: np.ndarray, pivot_z: np.ndarray, K: int) -> np.ndarray:
    """Equivalence classes representatives (ECR): the permutation of each draw's allocation vector that agrees with
    the pivot allocation at the most points, cost[k, l] = -#{u : z_su = l, pivot_u = k}.

    Args:
        z: (S, n) allocations in 0..K-1 (sampled, or the most probable class of each point under the draw).
        pivot_z: (n,) the pivot allocation (e.g. the allocation of the draw of highest posterior density).
    """
    z = np.asarray(z)
    pivot_z = np.asarray(pivot_z)
    if z.ndim != 2 or pivot_z.shape != (z.shape[1],):
        raise ValueError(f"z must be (S, n) and pivot_z (n,), got {z.shape} and {pivot_z.shape}")
    if z.size and (z.min() < 0 or z.max() >= K or pivot_z.min() < 0 or pivot_z.max() >= K):
        raise ValueError(f"allocations must lie in 0..{K - 1}")
    perms = np.empty((z.shape[0], K), dtype=np.int64)
    for s in range(z.shape[0]):
        counts = np.zeros((K, K))
        np.add.at(counts, (pivot_z, z[s]), 1.0)
        perms[s] = _assign(-counts)
    return perms


def stephens(probs: np.ndarray, max_iter: int = 100, init: np.ndarray | None = None) -> tuple[np.ndarray, int]:
    """Stephens' (2000) KL algorithm: the permutations minimising sum_s KL(Q || P_s permuted), where P_s (n, K) are
    the classification probabilities under draw s and Q their average after relabelling. Alternates Q = mean_s of
    the permuted P_s with, per draw, the assignment cost[k, l] = -sum_u Q_uk log P_s,ul, until no permutation
    changes (each step lowers the objective, so it stops).

    Returns (perms (S, K), iterations)."""
    P = np.asarray(probs, dtype=np.float64)
    if P.ndim != 3:
        raise ValueError(f"probs must be (S, n, K), got shape {P.shape}")
    S, n, K = P.shape
    logP = np.log(np.clip(P, 1e-300, None))
    perms = np.tile(np.arange(K), (S, 1)) if init is None else np.asarray(init, dtype=np.int64).copy()
    _check(perms.shape, K)
    for it in range(1, max_iter + 1):
        Q = np.take_along_axis(P, perms[:, None, :], axis=2).mean(0)          # (n, K)
        cost = -np.einsum("uk,sul->skl", Q, logP)                             # (S, K, K)
        new = np.stack([_assign(c) for c in cost])
        if np.array_equal(new, perms):
            return perms, it
        perms = new
    return perms, max_iter


def component_quantities(pi: np.ndarray, mu: np.ndarray, pivot: int = 0, max_per_key: int = 3
                         ) -> dict[str, np.ndarray]:
    """Scalar per-component quantities of mixture draws after pivotal relabelling: {"pi[k]": (S,), "mu[k,j]": (S,)}
    for the first ``max_per_key`` coordinates j of each mean. pi (S, K), mu (S, K, d); the draws are aligned to draw
    ``pivot`` on the standardised (mu, log pi), so the map applied to a draw depends on that draw, the pivot and the
    per-coordinate scales of the whole set only: used by SBC with the pivot from an independent chain, the truth and
    the posterior draws are treated alike (their ranks stay uniform)."""
    pi, mu = np.asarray(pi, dtype=np.float64), np.asarray(mu, dtype=np.float64)
    if pi.ndim != 2 or mu.ndim != 3 or mu.shape[:2] != pi.shape:
        raise ValueError(f"pi must be (S, K) and mu (S, K, d), got {pi.shape} and {mu.shape}")
    perms = pivotal(np.concatenate([mu, np.log(pi)[..., None]], -1), pivot=pivot)
    pi_r, mu_r = permute(pi, perms), permute(mu, perms)
    out = {}
    for k in range(pi.shape[1]):
        out[f"pi[{k}]"] = pi_r[:, k]
        for j in range(min(mu.shape[2], max_per_key)):
            out[f"mu[{k},{j}]"] = mu_r[:, k, j]
    return out


def count_switches(perms: np.ndarray) -> np.ndarray:
    """Label switches per chain: the number of successive draws whose permutations differ. perms (C, S, K) -> (C,)."""
    perms = np.asarray(perms)
    if perms.ndim != 3:
        raise ValueError(f"perms must be (chain, draw, K), got shape {perms.shape}")
    return (perms[:, 1:] != perms[:, :-1]).any(-1).sum(-1)


@dataclass
class Relabelled:
    """The outcome of :func:`relabel_mixture`: relabelled draws (chain, draw, K, ...) of every component site,
    the permutations (chain, draw, K), label switches per chain, and a per-component summary table."""

    method: str
    draws: dict[str, np.ndarray]
    perms: np.ndarray
    switches: np.ndarray
    summary: pd.DataFrame
    iterations: int = 0


def relabel_mixture(model: Any, data: Any, result: Any, method: str = "stephens", max_draws: int | None = None
                    ) -> Relabelled:
    """Relabel the component draws of a Bayesian mixture result (Gibbs, NUTS, or CAVI/SVI draws from q).

    Uses the result's posterior draws of pi (chain, draw, K), mu (chain, draw, K, d) and the precision site
    (``model.precision_site``); classification probabilities p(z_u = k | theta_s, x) come from the model. The pivot
    (pivotal, ECR) is the draw of highest log joint. The summary has one row per component and quantity: mean, sd,
    and across chains R-hat and bulk ESS (NaN for one chain)."""
    import torch

    from inference.results import ess, rhat

    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    post = result.posterior
    site = model.precision_site
    missing = [k for k in ("pi", "mu", site) if k not in post]
    if missing:
        raise ValueError(f"relabel_mixture needs posterior draws of {missing} (a Bayesian mixture result)")
    C, S = np.asarray(post["pi"]).shape[:2]
    if max_draws is not None and S > max_draws:
        raise ValueError(f"{S} draws per chain: more than max_draws={max_draws}")
    flat = {k: np.asarray(post[k]).reshape((C * S,) + np.asarray(post[k]).shape[2:]) for k in ("pi", "mu", site)}
    K = flat["pi"].shape[1]
    data = model.prepare(data)
    n = data.shape[0]
    step = max(1, _PROBS_BATCH // (n * K * data.shape[1]))
    probs = np.concatenate([model.classification_probs(data, *(torch.as_tensor(flat[k][i:i + step], dtype=data.dtype)
                                                                for k in ("pi", "mu", site))).numpy()
                            for i in range(0, C * S, step)])
    lj = result.sample_stats.get("log_joint", post.get("log_joint"))  # (samplers keep it in sample_stats)
    pivot = int(np.argmax(np.asarray(lj).reshape(-1))) if lj is not None and np.size(lj) == C * S else 0
    iterations = 0
    if method == "stephens":
        perms, iterations = stephens(probs)
    elif method == "pivotal":
        params = np.concatenate([flat["mu"].reshape(C * S, K, -1), np.log(flat["pi"])[..., None]], -1)
        perms = pivotal(params, pivot=pivot)
    else:
        perms = ecr(probs.argmax(-1), probs[pivot].argmax(-1), K)
    draws = {k: permute(v, perms).reshape((C, S) + v.shape[1:]) for k, v in flat.items()}
    perms_c = perms.reshape(C, S, K)
    rows = []
    for name, arr in draws.items():
        per = arr.reshape(C, S, K, -1)
        m = per.shape[-1]
        flat_kj = per.reshape(C, S, K * m)
        r = rhat(flat_kj).reshape(K, m) if C > 1 else np.full((K, m), np.nan)
        e = ess(flat_kj).reshape(K, m) if C * S > 3 else np.full((K, m), np.nan)
        for k in range(K):
            for j in range(m):
                x = per[:, :, k, j]
                rows.append({"component": k, "quantity": name if m == 1 else f"{name}[{j}]", "mean": float(x.mean()),
                             "sd": float(x.std()), "rhat": float(r[k, j]), "ess_bulk": float(e[k, j])})
    return Relabelled(method, draws, perms_c, count_switches(perms_c), pd.DataFrame(rows), iterations)


def mixture_report(comparison: Any, model: Any, out: Any) -> list:
    """The compare_figures of the Bayesian mixtures: every method's draws relabelled (Stephens), written as
    components.csv (per method, component and quantity: mean, sd, R-hat, bulk ESS, label switches), and
    relabelled_trace.png: the reference sampler's draws of each component's first mean coordinate per chain, before
    and after relabelling."""
    from pathlib import Path

    from inference.workflows.plots import save_figure, use_agg
    from models._io import write_text

    out = Path(out)
    tables, relabelled = [], {}
    for name, res in comparison.results.items():
        if not all(k in res.posterior for k in ("pi", "mu", model.precision_site)):
            continue
        r = relabel_mixture(model, comparison.train, res, "stephens")
        relabelled[name] = r
        tables.append(r.summary.assign(method=name, label_switches=int(r.switches.sum()))
                      [["method", "component", "quantity", "mean", "sd", "rhat", "ess_bulk", "label_switches"]])
    if not tables:
        return []
    files = [write_text(out / "components.csv", pd.concat(tables).to_csv(index=False))]
    ref = comparison.reference if comparison.reference in relabelled else next(iter(relabelled))
    use_agg()
    import matplotlib.pyplot as plt

    raw = np.asarray(comparison.results[ref].posterior["mu"])[..., 0]      # (C, S, K)
    new = relabelled[ref].draws["mu"][..., 0]
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.6), sharey=True)
    for ax, arr, title in ((axes[0], raw, "as sampled"), (axes[1], new, "relabelled (Stephens)")):
        for c in range(arr.shape[0]):
            for k in range(arr.shape[2]):
                ax.plot(arr[c, :, k], lw=0.5, color=f"C{k}", alpha=0.7)
        ax.set(title=f"{ref}: mu[k, 0] per chain, {title}", xlabel="draw")
    axes[0].set_ylabel("component mean, first coordinate (colour: label k)")
    fig.tight_layout()
    files.append(save_figure(fig, out / "relabelled_trace.png", close=True))
    return files


# ---------------------------------------------------------------------------------------------------
# Matrix factorisations: align each draw's factors to a reference draw (the invariant quantities, the rates and
# the predicted entries, stay the primary diagnostics; aligned factors make per-factor summaries meaningful)


def align_poisson_mf(theta: np.ndarray, eta: np.ndarray,
                     reference: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Poisson MF draws theta (S, N, K), eta (S, M, K) in a common factor order and scale.

    Each factor's scale is fixed by normalising its loadings, eta_.k / sum_m eta_mk (theta_.k times that sum: every
    rate theta_n . eta_m is unchanged); then each draw's factors are matched to the reference draw's by the Hungarian
    method on the squared distance between normalised loadings. Returns (theta, eta, perms (S, K))."""
    theta, eta = np.asarray(theta, dtype=np.float64), np.asarray(eta, dtype=np.float64)
    if theta.ndim != 3 or eta.ndim != 3 or theta.shape[0] != eta.shape[0] or theta.shape[2] != eta.shape[2]:
        raise ValueError(f"theta (S, N, K) and eta (S, M, K) expected, got {theta.shape} and {eta.shape}")
    scale = eta.sum(1, keepdims=True)                                        # (S, 1, K)
    eta_n, theta_n = eta / scale, theta * scale
    ref = eta_n[reference]
    perms = np.stack([_assign(((ref[:, :, None] - e[:, None, :]) ** 2).sum(0)) for e in eta_n])
    swap = lambda x: permute(x.swapaxes(1, 2), perms).swapaxes(1, 2)  # noqa: E731  (factors on the last axis)
    return swap(theta_n), swap(eta_n), perms


def align_gaussian_mf(U: np.ndarray, V: np.ndarray, reference: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Gaussian MF draws U (S, N, K), V (S, M, K) rotated onto the reference draw by orthogonal Procrustes:
    R_s = argmin_R ||V_s R - V_ref||_F over orthogonal R, from the SVD V_s^T V_ref = A Sigma B^T, R_s = A B^T; then
    U_s R_s, V_s R_s (U V^T is unchanged). Returns (U, V, R (S, K, K))."""
    U, V = np.asarray(U, dtype=np.float64), np.asarray(V, dtype=np.float64)
    if U.ndim != 3 or V.ndim != 3 or U.shape[0] != V.shape[0] or U.shape[2] != V.shape[2]:
        raise ValueError(f"U (S, N, K) and V (S, M, K) expected, got {U.shape} and {V.shape}")
    A, _, Bt = np.linalg.svd(V.swapaxes(1, 2) @ V[reference][None])        # (S, K, K)
    R = A @ Bt
    return U @ R, V @ R, R


def _factor_report(comparison: Any, model: Any, out: Any, align, sites: tuple[str, str], what: str) -> list:
    from pathlib import Path

    from inference.results import ess, rhat
    from inference.workflows.plots import save_figure, use_agg
    from models._io import write_text

    out = Path(out)
    rows, aligned = [], {}
    for name, res in comparison.results.items():
        if not all(s in res.posterior for s in sites):
            continue
        A, B = (np.asarray(res.posterior[s]) for s in sites)
        C, S = A.shape[:2]
        lj = res.sample_stats.get("log_joint", res.posterior.get("log_joint"))
        ref = int(np.argmax(np.asarray(lj).reshape(-1))) if lj is not None and np.size(lj) == C * S else 0
        a, b, _ = align(A.reshape((C * S,) + A.shape[2:]), B.reshape((C * S,) + B.shape[2:]), reference=ref)
        a, b = a.reshape(A.shape), b.reshape(B.shape)
        aligned[name] = (A, a)
        size = np.linalg.norm(a, axis=2) * np.linalg.norm(b, axis=2)            # (C, S, K): the factor's size
        loadings = b.reshape(C, S, -1)
        r_size = rhat(size) if C > 1 else np.full(size.shape[-1], np.nan)
        r_load = rhat(loadings).reshape(b.shape[2:]).max(0) if C > 1 else np.full(size.shape[-1], np.nan)
        e_size = ess(size) if C * S > 3 else np.full(size.shape[-1], np.nan)
        for k in range(size.shape[-1]):
            rows.append({"method": name, "factor": k, "size_mean": float(size[..., k].mean()),
                         "size_sd": float(size[..., k].std()), "rhat_size": float(r_size[k]),
                         "max_rhat_loadings": float(r_load[k]), "ess_bulk_size": float(e_size[k])})
    if not rows:
        return []
    files = [write_text(out / "factors.csv", pd.DataFrame(rows).to_csv(index=False))]
    ref = comparison.reference if comparison.reference in aligned else next(iter(aligned))
    use_agg()
    import matplotlib.pyplot as plt

    before, after = aligned[ref]
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.6), sharey=True)
    for ax, arr, title in ((axes[0], before, "as sampled"), (axes[1], after, f"aligned ({what})")):
        col = np.linalg.norm(arr, axis=2)                                        # (C, S, K)
        for c in range(col.shape[0]):
            for k in range(min(col.shape[2], 10)):
                ax.plot(col[c, :, k], lw=0.5, color=f"C{k}", alpha=0.7)
        ax.set(title=f"{ref}: |{sites[0]}_.k| per chain, {title}", xlabel="draw", yscale="log")
    fig.tight_layout()
    files.append(save_figure(fig, out / "factor_trace.png", close=True))
    return files


def poisson_factor_report(comparison: Any, model: Any, out: Any) -> list:
    """The compare_figures of Poisson MF: every method's draws aligned (normalised loadings, Hungarian matching to
    the draw of highest log joint), factors.csv (per method and factor: the factor's size |theta_.k| |eta_.k|, its
    R-hat and bulk ESS, the largest R-hat of its loadings) and factor_trace.png (before / after)."""
    return _factor_report(comparison, model, out, align_poisson_mf, ("theta", "eta"), "normalised, matched")


def gaussian_factor_report(comparison: Any, model: Any, out: Any) -> list:
    """The compare_figures of Gaussian MF: as :func:`poisson_factor_report`, aligned by orthogonal Procrustes."""
    return _factor_report(comparison, model, out, align_gaussian_mf, ("U", "V"), "Procrustes")
