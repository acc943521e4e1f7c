"""Gaussian MF benchmark: every method on MovieLens-100K's official folds (or the Netflix/MITx missing entries),
and the CAVI vs SVI race on the course's model.

    python benchmarks/gaussian_mf_bench.py [--data movielens-100k|netflix] [--K 5 10 20 30] [--methods gibbs,als]
    python benchmarks/gaussian_mf_bench.py --race [--repeats 3]

The first form is ``inferlab benchmark gaussian-mf`` (inference/workflows/benchmark.py): per-split test RMSE, test log
predictive density per rating, fit time and Gibbs ms per sweep. ``--race`` fits the fixed-prior model with
alpha ~ Ga(1, 1) on u1 at K=10 by CAVI (100 sweeps) and by minibatch SVI (20 epochs of 1,000-rating batches),
records the closed-form ELBO and test NLL per rating after every sweep / epoch, and reports the seconds CAVI needs
to reach SVI's final ELBO (medians over repeats; the scoring time is left out of both clocks).
"""

from __future__ import annotations

import argparse
import math
import statistics
import warnings

import numpy as np

warnings.simplefilter("ignore")

from inference import fit_cavi, fit_svi  # noqa: E402
from inference.workflows.benchmark import BENCH_METHODS, Settings, benchmark, seconds_to_reach, splits, summary_table  # noqa: E402
from models.gaussian_mf import GaussianMF  # noqa: E402


def race(repeats: int, K: int = 10) -> None:
    _, train, test = next(splits("movielens-100k"))
    model = GaussianMF(K=K, prior="fixed", noise_prior=(1.0, 1.0))
    per_epoch = math.ceil(len(train) / 1000)

    def nll(q):
        return {"test_nll": model.test_nll(train, q, test)}
    rows = []
    for r in range(repeats):
        cavi = fit_cavi(model, train, seed=r, num_iters=100, monitor=nll, progress=False)
        svi = fit_svi(model, train, seed=r, num_iters=20 * per_epoch, subsample_size=1000, lr=0.02,
                      eval_every=per_epoch, monitor=nll, progress=False)
        e_svi = np.asarray(svi.trace["elbo"])[::per_epoch] / len(train)
        nll_svi = np.asarray(svi.trace["test_nll"])[::per_epoch]
        e_cavi = np.asarray(cavi.trace["objective"]) / len(train)
        rows.append({"cavi_s": float(cavi.trace["seconds"][-1]), "svi_s": float(svi.trace["seconds"][-1]),
                     "cavi_elbo": e_cavi[-1], "svi_elbo": e_svi[-1], "cavi_nll": float(cavi.trace["test_nll"][-1]),
                     "svi_nll": nll_svi[-1],
                     "cavi_to_svi": seconds_to_reach(np.asarray(cavi.trace["seconds"]), e_cavi, e_svi[-1]),
                     "svi_epochs": (e_svi, nll_svi)})
    med = {k: statistics.median(r[k] for r in rows) for k in rows[0] if k != "svi_epochs"}
    print(f"CAVI vs SVI, u1, K={K}, fixed prior, alpha ~ Ga(1, 1); medians of {repeats} seeds")
    print("| method | final ELBO / rating | test NLL / rating | seconds (scoring excluded) |")
    print("|---|---|---|---|")
    print(f"| CAVI, 100 sweeps | {med['cavi_elbo']:.4f} | {med['cavi_nll']:.4f} | {med['cavi_s']:.2f} |")
    print(f"| SVI, 20 epochs x {per_epoch} steps | {med['svi_elbo']:.4f} | {med['svi_nll']:.4f} | {med['svi_s']:.2f} |")
    print(f"CAVI reaches SVI's final ELBO after {med['cavi_to_svi']:.2f} s "
          f"({med['svi_s'] / med['cavi_to_svi']:.0f}x sooner)")
    e, n = rows[0]["svi_epochs"]
    print("SVI per epoch (seed 0): epoch | ELBO / rating | test NLL / rating")
    for ep in (1, 2, 5, 10, 20):
        print(f"  {ep:>2d} | {e[ep]:.4f} | {n[ep]:.4f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="movielens-100k", choices=["movielens-100k", "netflix"])
    ap.add_argument("--K", type=int, nargs="+", default=[10])
    ap.add_argument("--methods", default=",".join(BENCH_METHODS))
    ap.add_argument("--out", default=None)
    ap.add_argument("--race", action="store_true", help="CAVI vs SVI on the course's model instead")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    if args.race:
        race(args.repeats)
        return
    rows = benchmark(args.data, args.methods.split(","), args.K, Settings(), out=args.out, progress=True)
    print(summary_table(rows))


if __name__ == "__main__":
    main()
