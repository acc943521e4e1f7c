"""How well the samplers mix (issue: diagnostics under label switching): max R-hat and min bulk ESS per second,
before and after, on make demo's problem, on the mixtures' toy data and on a LastFM subset. Prints markdown tables.

    python benchmarks/mixing_bench.py                  # all three problems (about 8 minutes on 2 cores)
    python benchmarks/mixing_bench.py --only demo      # one problem: demo, toy, lastfm
    python benchmarks/mixing_bench.py --seeds 0 1 2 3 4
    python benchmarks/mixing_bench.py --only lastfm --configs before cavi-start

Poisson MF (demo problem and LastFM subset), over the rates of the tracked cells and the log joint:
    before    compare's Gibbs settings up to this change: 1000 draws after 500 warm-up sweeps, no thinning
    scale     the same with the exact per-factor scale move (PoissonMF(scale_move=True), eq. 7)
    shear     the same with exact shear moves along the non-negative rotations of the factors (below; measured, not
              adopted: it is not in the library)
    after     compare's settings now (models/poisson_mf/spec.py): 2000 draws, 1000 warm-up sweeps, every 10th kept
    cavi-start  "before"'s settings with all 4 chains started at the posterior mean of the best of 8 CAVI fits
              (seeds 0-7; their time is not counted): whether the chains leave (and disagree about) the best mode
Mixtures (toy data, K = 3), over the component means: R-hat of the raw draws (labels as sampled), of the sorted means
(the earlier invariant) and of the Stephens-relabelled means, with the relabelling's own time.

min ESS/s = min over quantities of bulk ESS / wall seconds of the fit (relabelling excluded; its time is shown).
Figures are medians over --seeds (each seed is one run of 4 chains).
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
import warnings

import numpy as np
import torch

warnings.simplefilter("ignore")

from inference import fit_gibbs  # noqa: E402
from inference.results import ess, rhat  # noqa: E402
from inference.workflows.relabel import relabel_mixture  # noqa: E402
from models import PoissonMF, as_count_matrix  # noqa: E402
from models.poisson_mf.model import GibbsState  # noqa: E402


def _truncated_exponential(lam: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """Inverse-CDF draw from the density ∝ exp(-lam s) on [lo, hi], u ~ U(0, 1)."""
    w = hi - lo
    flat = (lam * w).abs() < 1e-10
    lam = torch.where(flat, torch.ones_like(lam), lam)
    from_lo = lo - torch.log1p(u * torch.expm1(-lam * w)) / lam           # lam > 0: mass near lo
    from_hi = hi - torch.log1p((1 - u) * torch.expm1(lam * w)) / lam      # lam < 0: mass near hi
    return torch.where(flat, lo + u * w, torch.where(lam > 0, from_lo, from_hi)).clamp(lo, hi)


class ShearMoves(PoissonMF):
    """Gibbs with, after each sweep, a shear move per ordered factor pair (k, l): theta_.k -> theta_.k + s theta_.l,
    eta_.l -> eta_.l - s eta_.k leaves every rate unchanged and has unit Jacobian (an additive one-parameter group),
    so drawing s from the posterior along that line is exact (Liu and Sabatti 2000). With a_theta = a_eta = 1 the
    line's density is exp(-s (b_theta sum_n theta_nl - b_eta sum_m eta_mk)) on the interval keeping both
    non-negative, a truncated exponential. Together with the scale move these span every non-negative
    re-factorisation theta A, eta A^-T."""

    name = "poisson-mf"

    def gibbs_sweep(self, data, state, generator):
        if self.a_theta != 1 or self.a_eta != 1:
            raise ValueError("the shear move here is written for a_theta = a_eta = 1")
        theta, eta = super().gibbs_sweep(data, state, generator)
        for k in range(self.K):
            for l in range(self.K):
                if k == l:
                    continue
                tk, tl, ek, el = theta[..., k], theta[..., l], eta[..., k], eta[..., l]
                lo, hi = (-tk / tl).amax(-1), (el / ek).amin(-1)
                lam = self.b_theta * tl.sum(-1) - self.b_eta * ek.sum(-1)
                s = _truncated_exponential(lam, lo, hi, torch.rand(lo.shape, generator=generator, dtype=lo.dtype))
                theta, eta = theta.clone(), eta.clone()
                theta[..., k] = (tk + s[..., None] * tl).clamp_min(torch.finfo(tk.dtype).tiny)
                eta[..., l] = (el - s[..., None] * ek).clamp_min(torch.finfo(ek.dtype).tiny)
        return GibbsState(theta, eta)


POISSON_CONFIGS = {
    "before": (PoissonMF, {}, dict(num_samples=1000, warmup=500, thin=1)),
    "scale": (PoissonMF, {"scale_move": True}, dict(num_samples=1000, warmup=500, thin=1)),
    "shear": (ShearMoves, {}, dict(num_samples=1000, warmup=500, thin=1)),
    "after": (PoissonMF, {}, dict(num_samples=2000, warmup=1000, thin=10)),
    "cavi-start": (PoissonMF, {}, dict(num_samples=1000, warmup=500, thin=1)),
}


def _best_cavi_start(model: PoissonMF, data, restarts: int = 8) -> list[GibbsState]:
    """Four copies of the posterior mean under q of the best (highest final ELBO) of ``restarts`` CAVI fits."""
    from inference import fit_cavi

    fits = [fit_cavi(model, data, seed=s, num_iters=500, progress=False) for s in range(restarts)]
    best = max(fits, key=lambda r: float(np.asarray(r.trace["objective"])[-1]))
    state = GibbsState(*(torch.as_tensor(np.asarray(best.point[k])) for k in ("theta", "eta")))
    return [state] * 4


def _diagnostics(draws: dict[str, np.ndarray]) -> tuple[float, float]:
    """(max R-hat, min bulk ESS) over every quantity; draws (chain, draw, ...)."""
    r = max(float(np.nanmax(rhat(v.reshape(v.shape[:2] + (-1,))))) for v in draws.values())
    e = min(float(np.nanmin(ess(v.reshape(v.shape[:2] + (-1,))))) for v in draws.values())
    return r, e


def poisson_rows(label: str, data, K: int, hyper: dict, seeds: list[int], configs: list[str]) -> list[str]:
    rows = []
    for name, (cls, extra, settings) in POISSON_CONFIGS.items():
        if name not in configs:
            continue
        runs = []
        for seed in seeds:
            model = cls(K=K, **hyper, **extra)
            init = _best_cavi_start(model, data) if name == "cavi-start" else None
            t = time.perf_counter()
            res = fit_gibbs(model, data, seed=seed, num_chains=4, progress=False, init=init, **settings)
            sec = time.perf_counter() - t
            r, e = _diagnostics({"rate": np.asarray(res.posterior["rate"]),
                                 "log_joint": np.asarray(res.sample_stats["log_joint"])})
            runs.append((sec, r, e, e / sec))
        sec, r, e, eps = (statistics.median(x) for x in zip(*runs))
        sweeps = settings["warmup"] + settings["num_samples"] * settings["thin"]
        rows.append(f"| {label} | {name} | {sweeps} | {sec:.1f} | {r:.3f} | {e:.0f} | {eps:.1f} |")
        print(rows[-1], file=sys.stderr, flush=True)
    return rows


def mixture_rows(seeds: list[int]) -> list[str]:
    from models import BayesGMM, BayesGMMFull
    from models.mixture.spec import load_toy

    data = load_toy()
    rows = []
    for cls in (BayesGMM, BayesGMMFull):
        runs = []
        for seed in seeds:
            model = cls(K=3)
            t = time.perf_counter()
            res = fit_gibbs(model, data, seed=seed, num_samples=1000, warmup=500, num_chains=4, progress=False)
            sec = time.perf_counter() - t
            mu = np.asarray(res.posterior["mu"])                                    # (C, S, K, d)
            t = time.perf_counter()
            out = relabel_mixture(model, data, res, "stephens")
            sec_relabel = time.perf_counter() - t
            raw, _ = _diagnostics({"mu": mu})
            order = np.argsort(mu[..., 0], axis=-1)                                 # sorted on the first coordinate
            srt, _ = _diagnostics({"mu": np.take_along_axis(mu, order[..., None], axis=2)})
            rel, e = _diagnostics({"mu": out.draws["mu"]})
            runs.append((sec, sec_relabel, raw, srt, rel, e / sec, int(out.switches.sum())))
        sec, sec_relabel, raw, srt, rel, eps, sw = (statistics.median(x) for x in zip(*runs))
        rows.append(f"| toy | {cls.__name__} | {sec:.1f} | {sec_relabel:.1f} | {raw:.3f} | {srt:.3f} | {rel:.4f} | "
                    f"{eps:.1f} | {sw:.0f} |")
        print(rows[-1], file=sys.stderr, flush=True)
    return rows


def lastfm_subset(users: int = 100, artists: int = 150):
    """The ``users`` heaviest listeners x the ``artists`` most played artists of LastFM."""
    from models.datasets import load_lastfm

    X = load_lastfm().to_dense()
    X = X[X.sum(1).argsort(descending=True)[:users]]
    X = X[:, X.sum(0).argsort(descending=True)[:artists]]
    return as_count_matrix(X, name=f"LastFM {users} x {artists}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", choices=("demo", "toy", "lastfm"), nargs="+", default=["demo", "toy", "lastfm"])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--configs", nargs="+", choices=list(POISSON_CONFIGS), default=list(POISSON_CONFIGS),
                    help="the Poisson MF samplers to run")
    args = ap.parse_args(argv)
    torch.set_num_threads(2)
    print(f"# Sampler mixing ({platform.processor() or platform.machine()}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads; medians over seeds {args.seeds})\n")
    poisson = []
    if "demo" in args.only:
        from models.poisson_mf.spec import synthetic

        demo = synthetic(20, 30, 3, torch.Generator().manual_seed(0))    # make demo's problem
        poisson += poisson_rows("demo 20 x 30, K = 3", demo, 3, {}, args.seeds, args.configs)
    if "lastfm" in args.only:
        sub = lastfm_subset()
        poisson += poisson_rows(f"{sub.name}, K = 5 (nnz {sub.nnz})", sub, 5,
                                {"a_theta": 1.0, "b_theta": 0.5, "a_eta": 1.0, "b_eta": 0.5}, args.seeds,
                                args.configs)
    if poisson:
        print("## Poisson MF Gibbs, 4 chains: rates of the tracked cells and the log joint\n")
        print("| problem | sampler | sweeps per chain | seconds | max R-hat | min bulk ESS | min ESS/s |")
        print("|---|---|---|---|---|---|---|")
        print("\n".join(poisson) + "\n")
    if "toy" in args.only:
        rows = mixture_rows(args.seeds[:1])
        print("## Bayesian mixtures, Gibbs 4 chains x 1000 draws after 500 warm-up, K = 3: component means\n")
        print("| data | model | Gibbs seconds | relabel seconds | R-hat raw | R-hat sorted | R-hat relabelled | "
              "min ESS/s relabelled | label switches |")
        print("|---|---|---|---|---|---|---|---|---|")
        print("\n".join(rows) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
