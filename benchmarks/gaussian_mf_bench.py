"""Gaussian MF on MovieLens-100K, official folds u1..u5: BPMF Gibbs test RMSE and time per sweep, against
ridge ALS (batched, dense mask) and truncated SVD of the mean-filled matrix.

    python benchmarks/gaussian_mf_bench.py [--K 5 10 20 30] [--samples 400] [--warmup 50]

Work in progress for the Gaussian MF issue: CAVI, SVI, NUTS and the biased-SGD baseline are not here yet.
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings

import numpy as np

warnings.simplefilter("ignore")

from inference import fit_gibbs  # noqa: E402
from inference.baselines import als  # noqa: E402
from models.datasets import load_movielens_100k  # noqa: E402
from models.gaussian_mf import GaussianMF, as_rating_data, predict  # noqa: E402


def rmse(pred, truth):
    return float(np.sqrt(np.mean((pred - truth) ** 2)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--K", type=int, nargs="+", default=[10])
    ap.add_argument("--samples", type=int, default=400)
    ap.add_argument("--warmup", type=int, default=50)
    ap.add_argument("--als-lam", type=float, default=10.0)
    ap.add_argument("--alpha", type=float, default=2.0, help="noise precision (fixed), or its start")
    ap.add_argument("--noise-prior", type=float, nargs=2, default=None, metavar=("A", "B"),
                    help="Gamma(A, B) prior on the noise precision (sampled)")
    args = ap.parse_args()
    ml = load_movielens_100k()
    print("| method | K | RMSE u1 | u2 | u3 | u4 | u5 | mean | ms / sweep (median) | fit s (mean) |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for K in args.K:
        model = GaussianMF(K=K, alpha=args.alpha, noise_prior=tuple(args.noise_prior) if args.noise_prior else None)
        errs, sweeps, fits = [], [], []
        for train, test in ml.folds:
            tr = as_rating_data(train)
            t0 = time.perf_counter()
            res = fit_gibbs(model, tr, seed=0, num_samples=args.samples, warmup=args.warmup, num_chains=1,
                            progress=False)
            fits.append(time.perf_counter() - t0)
            sec = np.asarray(res.trace["seconds"][0])
            sweeps.append(float(np.median(np.diff(sec))) * 1e3)
            mean, _ = predict(model, tr, res, test.rows, test.cols, clip=(1.0, 5.0))
            errs.append(rmse(mean, test.values))
        label = f"BPMF Gibbs, alpha ~ Ga{tuple(args.noise_prior)}" if args.noise_prior else f"BPMF Gibbs, alpha={args.alpha}"
        print(f"| {label} | {K} | " + " | ".join(f"{e:.4f}" for e in errs) + f" | {np.mean(errs):.4f} | "
              f"{statistics.median(sweeps):.1f} (incl. log joint) | {np.mean(fits):.1f} |", flush=True)
        errs = []
        for train, test in ml.folds:
            A = np.zeros(ml.shape)
            A[train.rows, train.cols] = train.values
            mask = A != 0
            mu = train.values.mean()
            f = als(np.where(mask, A - mu, 0.0), K, lam=args.als_lam, iters=30, mask=mask)
            errs.append(rmse(np.clip(mu + f.reconstruction[test.rows, test.cols], 1, 5), test.values))
        print(f"| ridge ALS (lam={args.als_lam}) | {K} | " + " | ".join(f"{e:.4f}" for e in errs)
              + f" | {np.mean(errs):.4f} | - | - |", flush=True)


if __name__ == "__main__":
    main()
