"""Poisson MF benchmarks: LastFM CAVI wall time and ELBO, scaling in K and in nonzeros, initialisations,
and where NUTS stops being practical. Prints markdown tables (medians of repeated runs).

    python benchmarks/poisson_mf_bench.py                 # LastFM figures + scaling (a few minutes)
    python benchmarks/poisson_mf_bench.py --inits         # also compare CAVI initialisations on LastFM
    python benchmarks/poisson_mf_bench.py --nuts          # also time NUTS vs Gibbs by problem size
    python benchmarks/poisson_mf_bench.py --device cuda   # the closed-form path on a GPU

Needs LastFM (INFERLAB_DATA or the download cache).
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import statistics
import sys
import warnings

import numpy as np
import torch

warnings.simplefilter("ignore")

from inference import fit_cavi  # noqa: E402
from models import PoissonMF, as_count_matrix  # noqa: E402
from models.conjugate import gamma_expectations  # noqa: E402
from models.datasets import load_lastfm  # noqa: E402
from models.poisson_mf import CaviState  # noqa: E402


class StraightforwardSparse(PoissonMF):
    """The same CAVI with the explicit (nnz, K) responsibilities at every sweep (no sparse-product trick)."""

    name = "poisson-mf"

    def allocate(self, data, phi_theta, phi_eta, *, exact=False):
        return self._allocate_exact(data, phi_theta, phi_eta)

    def _allocate_shifted(self, data, phi_theta, phi_eta, *_):
        return self._allocate_exact(data, phi_theta, phi_eta)


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def time_fit(model, X, repeats, device, **kw):
    times, results = [], []
    for seed in range(repeats):
        sync(device)
        res = fit_cavi(model, X, seed=seed, progress=False, num_samples=1, device=device, **kw)
        sync(device)
        times.append(res.wall_time)
        results.append(res)
    return statistics.median(times), results


def lastfm_table(X, repeats, device):
    print("\n## LastFM, K=40, a=1, b=0.5, 200 sweeps, ELBO every sweep "
          f"(median of {repeats} runs, seeds 0..{repeats - 1}, device {device})\n")
    rss0 = peak_rss_mib()
    model = PoissonMF.course_lastfm(K=40)
    print("| variant | dtype | median wall s | s/sweep | final ELBO / sum(X) (median) | final ELBO (seed 0) |")
    print("|---|---|---|---|---|---|")
    rows, before = {}, os.environ.get("INFERLAB_KERNELS")
    variants = [("sparse products, compiled loops (default)", PoissonMF, torch.float64, "auto"),
                ("sparse products, torch expressions", PoissonMF, torch.float64, "torch"),
                ("sparse products", PoissonMF, torch.float32, "auto"),
                ("straightforward sparse (nnz x K lambda)", StraightforwardSparse, torch.float64, "torch")]
    for label, cls, dtype, kernels in variants:
        os.environ["INFERLAB_KERNELS"] = kernels  # read at every call (models/_kernels.py)
        m = cls(K=40, a_theta=1.0, b_theta=0.5, a_eta=1.0, b_eta=0.5)
        t, res = time_fit(m, X, repeats, device, num_iters=200, dtype=dtype)
        resc = statistics.median(r.attrs["rescaled_elbo"] for r in res)
        rows[label, dtype] = t
        print(f"| {label} | {str(dtype)[6:]} | {t:.3f} | {t / 200 * 1e3:.2f} ms | {resc:.4f} | "
              f"{res[0].attrs['elbo']:.6g} |")
    os.environ.pop("INFERLAB_KERNELS")
    if before is not None:
        os.environ["INFERLAB_KERNELS"] = before
    default = rows["sparse products, compiled loops (default)", torch.float64]
    torch_path = rows["sparse products, torch expressions", torch.float64]
    straightforward = rows["straightforward sparse (nnz x K lambda)", torch.float64]
    print(f"\nspeed-up (same run) of the compiled loops over the torch expressions: {torch_path / default:.2f}x; "
          f"of the default over the straightforward sparse path: {straightforward / default:.1f}x")
    print(f"peak resident memory of this process: {peak_rss_mib():.0f} MiB (before the fits: {rss0:.0f} MiB)")
    ref = fit_cavi(model, X, seed=0, num_iters=200, init="reference", elbo_at="after_eta", progress=False,
                   num_samples=1, device=device)
    print(f"reference variant (course initial ELBO at uniform lambda, ELBO after the eta update), seed 0: "
          f"initial {ref.trace['objective'][0] / X.total:.4f}, final {ref.attrs['rescaled_elbo']:.4f} (rescaled); "
          f"{ref.wall_time:.2f} s")


def scaling_in_K(X, repeats, device):
    print(f"\n## Time per sweep vs K (LastFM, nnz={X.nnz}, 50 sweeps, median of {repeats})\n")
    print("| K | ms / sweep | ms / sweep / K |")
    print("|---|---|---|")
    for K in (10, 20, 40, 80):
        t, _ = time_fit(PoissonMF.course_lastfm(K=K), X, repeats, device, num_iters=50)
        print(f"| {K} | {t / 50 * 1e3:.2f} | {t / 50 * 1e3 / K:.3f} |")


def random_counts(nnz, generator):
    N = M = int(np.sqrt(nnz / 0.02))  # 2% density
    flat = torch.randperm(N * M, generator=generator)[:nnz]
    vals = 1 + torch.poisson(torch.full((nnz,), 3.0, dtype=torch.float64), generator=generator)
    import pandas as pd

    return as_count_matrix(pd.DataFrame({"r": (flat // M).numpy(), "c": (flat % M).numpy(), "v": vals.numpy()}),
                           shape=(N, M))


def scaling_in_nnz(repeats, device):
    print(f"\n## Time per sweep vs number of nonzeros (synthetic, 2% dense, K=20, 20 sweeps, median of {repeats})\n")
    print("| nnz | N = M | ms / sweep | ns / (nnz x K) |")
    print("|---|---|---|---|")
    g = torch.Generator().manual_seed(0)
    for nnz in (10_000, 100_000, 1_000_000):
        X = random_counts(nnz, g)
        t, _ = time_fit(PoissonMF(K=20), X, repeats, device, num_iters=20)
        per = t / 20
        print(f"| {nnz:,} | {X.shape[0]:,} | {per * 1e3:.2f} | {per / (nnz * 20) * 1e9:.2f} |")


def init_table(X, seeds=15):
    print(f"\n## CAVI initialisations on LastFM (K=40, 200 sweeps, seeds 0..{seeds - 1})\n")
    model = PoissonMF.course_lastfm()

    def start(variant, seed):
        g = torch.Generator().manual_seed(seed)
        p = model.cavi_init(X, g, init="reference" if variant == "course (reference)" else "default").params
        if variant == "course, rates scaled to the observed total":
            p = model.cavi_init(X, torch.Generator().manual_seed(seed), init="reference").params
            c = torch.sqrt(((p.theta_shape / p.theta_rate).sum(0) * (p.eta_shape / p.eta_rate).sum(0)).sum() / X.total)
            p = p._replace(theta_rate=p.theta_rate * c, eta_rate=p.eta_rate * c)
            p = p._replace(phi_theta=gamma_expectations(p.theta_shape, p.theta_rate)[1],
                           phi_eta=gamma_expectations(p.eta_shape, p.eta_rate)[1])
        return CaviState(p, model.allocate(X, p.phi_theta, p.phi_eta))

    finals = {}
    print("| initialisation | final ELBO / sum(X) per seed | median | at sweep 20 (median) |")
    print("|---|---|---|---|")
    for variant in ("course (reference)", "course, rates scaled to the observed total",
                    "default (independence-fit rates)"):
        res = [fit_cavi(model, X, seed=0, num_iters=200, init=start(variant, s), progress=False, num_samples=1)
               for s in range(seeds)]
        f = [r.attrs["rescaled_elbo"] for r in res]
        at20 = statistics.median(float(r.trace["objective"][20]) / X.total for r in res)
        finals[variant] = f
        print(f"| {variant} | {', '.join(f'{v:.4f}' for v in f)} | {statistics.median(f):.4f} | {at20:.4f} |")
    d = np.array(finals["default (independence-fit rates)"]) - np.array(finals["course (reference)"])
    print(f"\ndefault minus course, paired by seed: mean {d.mean():+.4f}, sd {d.std(ddof=1):.4f}, "
          f"t = {d.mean() / (d.std(ddof=1) / np.sqrt(len(d))):.2f}, better on {(d > 0).sum()} of {len(d)} seeds")


def nuts_table():
    from inference import fit_gibbs, fit_nuts
    from inference.results import ess

    print("\n## NUTS vs Gibbs by problem size (synthetic, K=3, a=b=1; 1 chain; 100 warmup + 100 draws for NUTS, "
          "500 + 1000 sweeps for Gibbs)\n")
    print("| N x M | latent dims | NUTS s | NUTS min ESS(rate) | NUTS s/ESS | Gibbs s | Gibbs min ESS | Gibbs s/ESS |")
    print("|---|---|---|---|---|---|---|---|")
    for N, M in ((10, 15), (20, 30), (40, 60), (80, 120)):
        model = PoissonMF(K=3, a_theta=1.0, b_theta=1.0, a_eta=1.0, b_eta=1.0)
        _, X = model.sample(N, M, torch.Generator().manual_seed(0))
        n = fit_nuts(model, X, seed=0, num_samples=100, warmup=100, num_chains=1, jit=True, progress=False)
        g = fit_gibbs(model, X, seed=0, num_samples=1000, warmup=500, num_chains=1, progress=False)
        en, eg = float(np.min(ess(n.posterior["rate"]))), float(np.min(ess(g.posterior["rate"])))
        print(f"| {N} x {M} | {(N + M) * 3} | {n.wall_time:.1f} | {en:.0f} | {n.wall_time / en:.3f} | "
              f"{g.wall_time:.2f} | {eg:.0f} | {g.wall_time / eg:.4f} |")
        sys.stdout.flush()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--inits", action="store_true")
    ap.add_argument("--nuts", action="store_true")
    ap.add_argument("--skip-scaling", action="store_true")
    args = ap.parse_args()
    print(f"# Poisson MF benchmarks\n\n{platform.platform()}, python {platform.python_version()}, torch "
          f"{torch.__version__}, {torch.get_num_threads()} threads")
    X = load_lastfm()
    lastfm_table(X, args.repeats, args.device)
    if not args.skip_scaling:
        scaling_in_K(X, args.repeats, args.device)
        scaling_in_nnz(3, args.device)
    if args.inits:
        init_table(X)
    if args.nuts:
        nuts_table()


if __name__ == "__main__":
    main()
