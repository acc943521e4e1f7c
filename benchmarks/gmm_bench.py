"""Gaussian-mixture benchmarks: the course's Netflix runs (K=12, seeds 0..4), toy EM vs scikit-learn,
and whether the options beyond the course beat its RMSE on the missing Netflix entries.

    python benchmarks/gmm_bench.py [--repeats 5]

Needs the Netflix/MITx files (INFERLAB_DATA or the download cache).
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings


warnings.simplefilter("ignore")

from models.course import gmm  # noqa: E402
from models.datasets import load_netflix  # noqa: E402
from models.mixture.em_missing import fit_missing, impute  # noqa: E402


def netflix_course(nf, repeats):
    X = nf.incomplete
    print(f"\n## Netflix 1200 x 1200, the course's EM, K=12, seeds 0..4 (median of {repeats} repeats)\n")
    times, runs = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        runs = [gmm.em_missing(X, gmm.init(X, 12, s)[0]) for s in range(5)]
        times.append(time.perf_counter() - t0)
    print(f"all five runs: {statistics.median(times):.3f} s (min {min(times):.3f}, max {max(times):.3f})\n")
    print("| seed | LL | E-steps |")
    print("|---|---|---|")
    for s, r in enumerate(runs):
        print(f"| {s} | {r.objective:.10f} | {r.iterations} |")
    k1 = gmm.em_missing(X, gmm.init(X, 1, 0)[0])
    print(f"\nK=1: LL {k1.objective:.10f}")
    return max(runs, key=lambda r: r.objective)


def toy_vs_sklearn(repeats):
    from sklearn.mixture import GaussianMixture as SkGMM

    X = load_netflix("toy")
    n = len(X)
    print(f"\n## Toy data (250 x 2): one EM fit, the course's tolerance, vs scikit-learn (median of {repeats * 10})\n")
    print("| K | inferlab s | sklearn s | ratio | inferlab LL | sklearn LL |")
    print("|---|---|---|---|---|---|")
    for K in (1, 2, 3, 4):
        m0, _ = gmm.init(X, K, 0)
        ours, sk_t, ll_ours, ll_sk = [], [], None, None
        for _ in range(repeats * 10):
            t0 = time.perf_counter()
            run = gmm.em_complete(X, m0)
            ours.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            sk = SkGMM(K, covariance_type="spherical", reg_covar=0.0, tol=1e-6 * abs(run.objective) / n,
                       max_iter=100000, means_init=m0.mu, weights_init=m0.p, precisions_init=1 / m0.var).fit(X)
            sk_t.append(time.perf_counter() - t0)
            ll_ours, ll_sk = run.objective, sk.score(X) * n
        a, b = statistics.median(ours), statistics.median(sk_t)
        print(f"| {K} | {a * 1e3:.2f} ms | {b * 1e3:.2f} ms | {b / a:.1f}x | {ll_ours:.4f} | {ll_sk:.4f} |")


def netflix_options(nf, best_course):
    X, gold = nf.incomplete, nf.complete
    mask = (X == 0) & (gold != 0)
    print("\n## RMSE on the missing Netflix entries that have a rating in netflix_complete "
          f"({int(mask.sum()):,} entries), K=12\n")
    print("| variant | LL (observed) | RMSE missing | RMSE all entries | mean predictive sd | s |")
    print("|---|---|---|---|---|---|")
    filled = gmm.fill_matrix(X, best_course.mixture)
    print(f"| course EM, best of seeds 0..4 | {best_course.objective:.1f} | {gmm.rmse(gold, filled, mask):.4f} | "
          f"{gmm.rmse(gold, filled):.4f} | - | - |")
    variants = [("exact EM, spherical, course init seeds 0..4", dict(covariance="spherical", init="course", n_init=5)),
                ("exact EM, spherical, k-means++ x 5", dict(covariance="spherical", n_init=5)),
                ("exact EM, diagonal, k-means++ x 5", dict(covariance="diag", n_init=5)),
                ("exact EM, diagonal, k-means++ x 5, shrinkage 10", dict(covariance="diag", n_init=5, shrinkage=10.0)),
                ("exact EM, diagonal, k-means++ x 5, shrinkage 100", dict(covariance="diag", n_init=5, shrinkage=100.0))]
    for label, kw in variants:
        t0 = time.perf_counter()
        fit = fit_missing(X, 12, seed=0, **kw)
        secs = time.perf_counter() - t0
        filled, sd = impute(X, fit.mixture)
        print(f"| {label} | {fit.log_likelihood:.1f} | {gmm.rmse(gold, filled, mask):.4f} | "
              f"{gmm.rmse(gold, filled):.4f} | {sd[X == 0].mean():.3f} | {secs:.1f} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    nf = load_netflix()
    best = netflix_course(nf, args.repeats)
    toy_vs_sklearn(args.repeats)
    netflix_options(nf, best)


if __name__ == "__main__":
    main()
