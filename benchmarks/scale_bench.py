"""Poisson MF at scale: synthetic counts with 10^6, 10^7 (and 10^8) nonzeros, K = 40. Per method: time per sweep
(or per epoch), peak memory of the process, and held-out log-likelihood against wall time. Prints markdown tables.

    python benchmarks/scale_bench.py                         # 10^6 and 10^7 nonzeros (several minutes)
    python benchmarks/scale_bench.py --nnz 1e8 --methods cavi --sweeps 3
    python benchmarks/scale_bench.py --hpfrec /path/to/python  # also hpfrec, run by a Python that has it

The counts are drawn from Poisson MF itself in O(total count): each unit of count picks a factor k with probability
proportional to (sum_n theta_nk)(sum_m eta_mk), then a row n ∝ theta_nk and a column m ∝ eta_mk (the augmented model,
eq. 1, without an N x M matrix). Rows: nnz / 40, columns: nnz / 200; theta_nk ~ Ga(0.3, 0.3), eta_mk ~ Ga(0.3, 0.3) with
a power-law activity and popularity, 10 true factors. One percent of the nonzero cells is held out (their counts
are hidden from the fit); the score is the Poisson log-likelihood per held-out count at E[theta_n] . E[eta_m].

Methods, each in its own process (so that each has its own peak memory):
    cavi        fit_cavi's sweeps (in memory)
    fit         (with --methods fit) the whole fit_cavi call: the sweeps, then --samples draws from q (default 100)
                with their invariant quantities, PSIS k-hat and the result; fit_cavi refuses draws that would not fit
                in memory before its first sweep, and the row says so
    stochastic  stochastic VI (inference/stochastic.py) on the counts memory-mapped from disk, batches of 1% of the
                rows, rho_t = (1 + t)^-0.5, 5 local iterations; "per sweep" = per epoch (every row once)
    hpfrec      hpfrec's HPF (Gopalan et al.'s hierarchical model, its own CAVI), when --hpfrec names a Python with it
    parquet     (with --methods parquet) the conversion of a shuffled long-format Parquet file of the counts to
                memory-mapped CSR (RowBlocks.from_parquet); "per sweep" = the conversion's seconds
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

K = 40


def synthetic(nnz: int, seed: int = 0, true_K: int = 10) -> dict:
    """Counts from Poisson MF with about ``nnz`` nonzero cells, split 99 / 1 into train and test cells."""
    rng = np.random.default_rng(seed)
    N, M = max(100, nnz // 40), max(50, nnz // 200)
    activity = rng.pareto(2.0, N) + 1.0
    popularity = rng.pareto(1.5, M) + 1.0
    theta = rng.gamma(0.3, 1 / 0.3, (N, true_K)) * activity[:, None]
    eta = rng.gamma(0.3, 1 / 0.3, (M, true_K)) * popularity[:, None]
    w = theta.sum(0) * eta.sum(0)
    units = int(1.6 * nnz)
    keys = np.empty(units, dtype=np.int64)
    ks = rng.choice(true_K, units, p=w / w.sum())
    for k in range(true_K):
        idx = np.flatnonzero(ks == k)
        n = rng.choice(N, idx.size, p=theta[:, k] / theta[:, k].sum())
        m = rng.choice(M, idx.size, p=eta[:, k] / eta[:, k].sum())
        keys[idx] = n * M + m
    del ks
    keys, counts = np.unique(keys, return_counts=True)          # sorted: row-major
    test = rng.random(keys.size) < 0.01
    return {"N": N, "M": M, "train": (keys[~test] // M, keys[~test] % M, counts[~test].astype(np.float64)),
            "test": (keys[test] // M, keys[test] % M, counts[test].astype(np.float64))}


def heldout(theta_mean: np.ndarray, eta_mean: np.ndarray, test: tuple) -> float:
    """Poisson log-likelihood per held-out count at the posterior-mean rates."""
    from scipy.special import gammaln

    r, c, x = test
    rate = np.einsum("ik,ik->i", theta_mean[r], eta_mean[c])
    return float((x * np.log(rate) - rate - gammaln(x + 1)).sum() / x.sum())


def _peak_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # ru_maxrss is in KiB on Linux


def _load(data_file: str) -> tuple:
    """(the model, the training counts as a CountMatrix, the held-out cells (rows, cols, counts)); threads: all."""
    import scipy.sparse
    import torch

    from models import PoissonMF, as_count_matrix

    torch.set_num_threads(os.cpu_count() or 1)
    d = np.load(data_file)
    N, M = int(d["N"]), int(d["M"])
    X = as_count_matrix(scipy.sparse.csr_matrix((d["x"], (d["r"], d["c"])), shape=(N, M)), name="synthetic")
    return PoissonMF(K=K, a_theta=0.3, b_theta=0.3, a_eta=0.3, b_eta=0.3), X, (d["tr"], d["tc"], d["tx"])


def run_cavi(data_file: str, sweeps: int) -> dict:
    import torch

    from models.conjugate import gamma_expectations

    model, X, test = _load(data_file)
    data = model.prepare(X)
    state = model.cavi_init(data, torch.Generator().manual_seed(0))
    points, times = [], []
    for s in range(1, sweeps + 1):
        t0 = time.perf_counter()
        state, elbo = model.cavi_update(data, state)
        times.append(time.perf_counter() - t0)
        p = state.params
        E_t, E_e = gamma_expectations(p.theta_shape, p.theta_rate)[0], gamma_expectations(p.eta_shape, p.eta_rate)[0]
        points.append((sum(times), heldout(E_t.numpy(), E_e.numpy(), test)))  # wall time of the sweeps only
    return {"per_sweep": float(np.median(times)), "peak_gib": _peak_gib(), "curve": points, "elbo": float(elbo)}


def run_fit(data_file: str, sweeps: int, samples: int) -> dict:
    """The whole fit_cavi call: the sweeps, then ``samples`` draws from q with their invariant quantities, log q
    (PSIS k-hat) and the result. "curve": the held-out score at the end against the call's wall time."""
    from inference import fit_cavi

    model, X, test = _load(data_file)
    t0 = time.perf_counter()
    try:
        res = fit_cavi(model, X, seed=0, num_iters=sweeps, num_samples=samples, progress=False)
    except ValueError as exc:  # draws that would not fit in memory are refused before the sweeps
        return {"error": f"refused after {time.perf_counter() - t0:.1f} s: {str(exc).split(';')[0]}"}
    wall = time.perf_counter() - t0
    per_sweep = float(np.median(np.diff(np.asarray(res.trace["seconds"]))))  # (cumulative seconds, 0 at the start)
    E_t, E_e = (np.asarray(res.point[k]) for k in ("theta", "eta"))
    return {"per_sweep": per_sweep, "peak_gib": _peak_gib(), "curve": [(wall, heldout(E_t, E_e, test))],
            "elbo": float(res.trace["objective"][-1])}


def run_stochastic(data_file: str, sweeps: int, folder: str) -> dict:
    import torch

    from inference.stochastic import stochastic_vi
    from models import PoissonMF
    from models.conjugate import gamma_expectations
    from models.blocks import RowBlocks

    torch.set_num_threads(os.cpu_count() or 1)
    d = np.load(data_file)
    N, M = int(d["N"]), int(d["M"])
    indptr = np.zeros(N + 1, dtype=np.int64)
    indptr[1:] = np.cumsum(np.bincount(d["r"], minlength=N))
    RowBlocks.save(folder, indptr, d["c"].astype(np.int64), d["x"], (N, M))
    test = (d["tr"], d["tc"], d["tx"])
    del d
    blocks = RowBlocks.open(folder)
    model = PoissonMF(K=K, a_theta=0.3, b_theta=0.3, a_eta=0.3, b_eta=0.3)
    batch = max(1, N // 100)
    points, times = [], []
    q = None
    for epoch in range(1, sweeps + 1):
        t0 = time.perf_counter()
        run = stochastic_vi(model, blocks, seed=epoch, batch_size=batch, num_iters=N // batch, kappa=0.5,
                            tau=1.0 + (epoch - 1) * (N // batch), local_iters=5, eval_every=0, init=q,
                            progress=False)
        q = run.q
        times.append(time.perf_counter() - t0)
        E_t, E_e = gamma_expectations(q.theta_shape, q.theta_rate)[0], gamma_expectations(q.eta_shape, q.eta_rate)[0]
        points.append((sum(times), heldout(E_t.numpy(), E_e.numpy(), test)))
    return {"per_sweep": float(np.median(times)), "peak_gib": _peak_gib(), "curve": points, "elbo": None}


def write_parquet(data_file: str, path: str) -> None:
    """The training counts as a long-format Parquet file (user, item, count; row groups of 10^6 records, shuffled so
    that the conversion cannot rely on the order)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    d = np.load(data_file)
    order = np.random.default_rng(1).permutation(d["r"].size)
    pq.write_table(pa.table({"user": d["r"][order], "item": d["c"][order], "count": d["x"][order].astype(np.int64)}),
                   path, row_group_size=1_000_000)


def run_parquet(parquet: str, folder: str) -> dict:
    """RowBlocks.from_parquet: the Parquet file to memory-mapped CSR, batches of 10^6 records."""
    from models.blocks import RowBlocks

    t0 = time.perf_counter()
    blocks = RowBlocks.from_parquet(parquet, folder, counts=True, batch_records=1_000_000)
    wall = time.perf_counter() - t0
    return {"per_sweep": wall, "peak_gib": _peak_gib(), "curve": [[wall, float("nan")]], "elbo": None,
            "nnz": blocks.nnz}


HPFREC = """
import json, sys, time, resource, numpy as np, pandas as pd
from hpfrec import HPF
d = np.load(sys.argv[1]); sweeps = int(sys.argv[2])
df = pd.DataFrame({"UserId": d["r"], "ItemId": d["c"], "Count": d["x"]})
t = time.perf_counter()
m = HPF(k=40, maxiter=sweeps, stop_crit="maxiter", check_every=sweeps, verbose=False, random_seed=0, reindex=False,
        produce_dicts=False, keep_data=False, ncores=-1)
m.fit(df)
wall = time.perf_counter() - t
th, be = m.Theta, m.Beta
r, c, x = d["tr"], d["tc"], d["tx"]
ok = (r < th.shape[0]) & (c < be.shape[0])
rate = np.einsum("ik,ik->i", th[r[ok]], be[c[ok]])
from scipy.special import gammaln
ll = float((x[ok] * np.log(rate) - rate - gammaln(x[ok] + 1)).sum() / x[ok].sum())
print(json.dumps({"per_sweep": wall / sweeps, "peak_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
                  "curve": [[wall, ll]], "elbo": None}))
"""


def _child(method: str, data_file: str, sweeps: int, folder: str, out, samples: int = 100) -> None:
    try:
        if method == "parquet":  # (the file is written by another process: its memory is not the conversion's)
            res = run_parquet(data_file, folder)
        elif method == "fit":
            res = run_fit(data_file, sweeps, samples)
        else:
            res = run_cavi(data_file, sweeps) if method == "cavi" else run_stochastic(data_file, sweeps, folder)
        out.put(res)
    except MemoryError as exc:
        out.put({"error": f"out of memory ({exc})"})


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--nnz", type=float, nargs="+", default=[1e6, 1e7])
    ap.add_argument("--methods", nargs="+", default=["cavi", "stochastic"],
                    choices=["cavi", "stochastic", "parquet", "fit"],
                    help="parquet: the counts written as a shuffled long-format Parquet file, converted to "
                         "memory-mapped CSR by RowBlocks.from_parquet (time and peak memory of the conversion); "
                         "fit: the whole fit_cavi call, draws from q and result included (its held-out score "
                         "is against the call's wall time)")
    ap.add_argument("--samples", type=int, default=100, help="fit: draws from q (fit_cavi's num_samples)")
    ap.add_argument("--sweeps", type=int, default=10, help="sweeps (CAVI) or epochs (stochastic) per method")
    ap.add_argument("--hpfrec", default=None, help="a Python interpreter with hpfrec installed")
    ap.add_argument("--workdir", default=None, help="folder for the data and the on-disk counts (default: a temp)")
    args = ap.parse_args(argv)
    work = Path(args.workdir or tempfile.mkdtemp(prefix="inferlab-scale-"))
    work.mkdir(parents=True, exist_ok=True)
    print(f"# Poisson MF at scale, K = {K} ({platform.machine()}, {os.cpu_count()} cores, "
          f"{os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.0f} GiB)\n")
    rows, curves = [], []
    for nnz in (int(n) for n in args.nnz):
        t0 = time.perf_counter()
        d = synthetic(nnz)
        data_file = work / f"counts-{nnz}.npz"
        np.savez(data_file, N=d["N"], M=d["M"], r=d["train"][0], c=d["train"][1], x=d["train"][2],
                 tr=d["test"][0], tc=d["test"][1], tx=d["test"][2])
        real_nnz, N, M = d["train"][0].size, d["N"], d["M"]
        del d
        print(f"generated {real_nnz:,} training nonzeros ({N:,} x {M:,}) in {time.perf_counter() - t0:.0f} s",
              file=sys.stderr, flush=True)
        methods = list(args.methods) + (["hpfrec"] if args.hpfrec else [])
        for method in methods:
            if method == "hpfrec":
                proc = subprocess.run([args.hpfrec, "-c", HPFREC, str(data_file), str(args.sweeps)],
                                      capture_output=True, text=True)
                res = json.loads(proc.stdout.strip().splitlines()[-1]) if proc.returncode == 0 else \
                    {"error": proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else "failed"}
            else:
                ctx = multiprocessing.get_context("spawn")
                source, folder = str(data_file), str(work / f"csr-{nnz}")
                if method == "parquet":
                    source, folder = str(work / f"counts-{nnz}.parquet"), str(work / f"pq-csr-{nnz}")
                    writer = ctx.Process(target=write_parquet, args=(str(data_file), source))
                    writer.start()
                    writer.join()
                q = ctx.Queue()
                p = ctx.Process(target=_child, args=(method, source, args.sweeps, folder, q, args.samples))
                p.start()
                p.join()
                res = q.get() if not q.empty() else {"error": f"the process ended with status {p.exitcode}"}
            if "error" in res:
                rows.append(f"| {real_nnz:.2e} | {N:,} x {M:,} | {method} | - | - | - | {res['error']} |")
            else:
                wall, ll = res["curve"][-1]
                rows.append(f"| {real_nnz:.2e} | {N:,} x {M:,} | {method} | {res['per_sweep']:.2f} | "
                            f"{res['per_sweep'] / real_nnz * 1e9:.0f} | {res['peak_gib']:.1f} | {ll:.4f} after "
                            f"{wall:.0f} s |")
                curves.append((real_nnz, method, res["curve"]))
            print(rows[-1], file=sys.stderr, flush=True)
    print("| nonzeros | rows x columns | method | s per sweep (epoch) | ns per nonzero per sweep | peak GiB | "
          "held-out LL per count |")
    print("|---|---|---|---|---|---|---|")
    print("\n".join(rows))
    print("\n## Held-out log-likelihood per count against wall time (s)\n")
    for nnz, method, curve in curves:
        pts = ", ".join(f"{t:.0f}: {ll:.4f}" for t, ll in curve)
        print(f"- {nnz:.2e} {method}: {pts}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
