"""Calibration figures for every model on small problems drawn from its prior.

    python benchmarks/calibration_bench.py --pvalues [--replications 200]     # SBC p-values, every Gibbs sampler
    python benchmarks/calibration_bench.py --nuts [MODEL ...] --replications 100   # SBC p-values of NUTS
    python benchmarks/calibration_bench.py --sweep-time [--replications 200]  # local processes vs Dask LocalCluster
    python benchmarks/calibration_bench.py --geweke                           # max |z| per Gibbs sampler
    python benchmarks/calibration_bench.py --vsbc [--replications 200]        # VSBC of CAVI, every model

Models, problem sizes and sampler settings come from the registry's calibration entries (models.registry); the
table adds the BPMF variant of Gaussian MF (--variants).
"""

from __future__ import annotations

import argparse
import time
import warnings

warnings.simplefilter("ignore")

from inference.workflows.calibration import geweke, sbc, vsbc, vsbc_symmetry_pvalues  # noqa: E402
from inference.workflows.sweep import get_executor  # noqa: E402
from models import registry  # noqa: E402

MODELS: dict = {}  # label -> calibration model, filled by main() from the registry and --variants


def build_models(variants: list[str]) -> None:
    """Every registered model's calibration model (K=2), plus variants "NAME:option=value" (e.g. a prior)."""
    MODELS.clear()
    for spec in registry.specs():
        if spec.calibration is not None:
            MODELS[spec.name] = spec.calibration_model()
    for v in variants:
        name, _, assignment = v.partition(":")
        key, _, value = assignment.partition("=")
        MODELS[f"{name} ({key}={value})"] = registry.get(name).calibration_model(options={key: value})


def size_of(label):
    cal = registry.get(label.split(" ")[0]).calibration
    return cal.size, (cal.warmup, cal.thin)


# NUTS draws are nearly independent: no thinning, 39 draws (4 per rank bin) and 100 adaptation steps per replication
NUTS_SETTINGS = dict(num_draws=39, warmup=100, thin=1)


def pvalues(R: int, method: str, names) -> None:
    executor = get_executor("local")
    print("| model | method | size | replications x draws | quantities | smallest p | Bonferroni min p | wall s |")
    print("|---|---|---|---|---|---|---|---|")
    try:
        for name in names:
            size, (warmup, thin) = size_of(name)
            kw = NUTS_SETTINGS if method == "nuts" else dict(num_draws=99, warmup=warmup, thin=thin)
            t0 = time.perf_counter()
            res = sbc(MODELS[name], method, num_replications=R, size=size, executor=executor, progress=False, **kw)
            p = res.pvalues
            print(f"| {name} | {method} | {size} | {R} x {kw['num_draws']} | {', '.join(p)} | {min(p.values()):.4f} | "
                  f"{res.min_pvalue_bonferroni:.4f} | {time.perf_counter() - t0:.1f} |", flush=True)
    finally:
        executor.close()


def sweep_time(R: int) -> None:
    from distributed import Client, LocalCluster

    name = "gaussian-mf"
    size, (warmup, thin) = size_of(name)
    kw = dict(num_replications=R, size=size, num_draws=99, warmup=warmup, thin=thin, progress=False)
    local = get_executor("local", workers=2)
    t0 = time.perf_counter()
    try:
        a = sbc(MODELS[name], "gibbs", executor=local, **kw)
    finally:
        local.close()
    t_local = time.perf_counter() - t0
    t0 = time.perf_counter()
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, \
            Client(cluster) as client:
        t_up = time.perf_counter() - t0
        b = sbc(MODELS[name], "gibbs", executor=get_executor(client), **kw)
    t_dask = time.perf_counter() - t0
    same = all((a.ranks[k] == b.ranks[k]).all() for k in a.ranks)
    print(f"{R}-replication SBC sweep, {name} {size}, Gibbs {warmup} + 99 x {thin} sweeps per replication:")
    print(f"  local processes x 2: {t_local:.1f} s (pool start included)")
    print(f"  Dask LocalCluster, 2 workers x 1 thread: {t_dask:.1f} s (cluster start {t_up:.1f} s included)")
    print(f"  identical ranks: {same}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pvalues", action="store_true")
    ap.add_argument("--nuts", nargs="*", default=None, metavar="MODEL",
                    help="SBC of NUTS for these models (default: gaussian-mf bayes-gmm)")
    ap.add_argument("--sweep-time", action="store_true")
    ap.add_argument("--geweke", action="store_true")
    ap.add_argument("--vsbc", action="store_true")
    ap.add_argument("--replications", type=int, default=200)
    ap.add_argument("--variants", nargs="*", default=["gaussian-mf:prior=bpmf"], metavar="NAME:OPTION=VALUE",
                    help="extra configurations of registered models")
    args = ap.parse_args()
    build_models(args.variants)
    if args.pvalues:
        pvalues(args.replications, "gibbs", list(MODELS))
    if args.nuts is not None:
        pvalues(args.replications, "nuts", args.nuts or ["gaussian-mf", "bayes-gmm"])
    if args.sweep_time:
        sweep_time(args.replications)
    if args.vsbc:
        vsbc_table(args.replications)
    if args.geweke:
        print("| model | test functions | max abs z | min ESS (successive) |")
        print("|---|---|---|---|")
        for name, model in MODELS.items():
            size, _ = size_of(name)
            res = geweke(model, size, num_marginal=3000, num_successive=6000, seed=0, progress=False)
            print(f"| {name} | {len(res.table)} | {res.max_abs_z:.2f} | {res.table['ess'].min():.0f} |", flush=True)


def vsbc_table(R: int) -> None:
    """VSBC (Yao et al. 2018) of every model's CAVI: symmetry of the posterior quantile of the truth under q."""
    executor = get_executor("local")
    print("| model | size | quantities | mean quantile (min..max over quantities) | smallest symmetry p | wall s |")
    print("|---|---|---|---|---|---|")
    try:
        for name, model in MODELS.items():
            size, _ = size_of(name)
            t0 = time.perf_counter()
            q = vsbc(model, num_replications=R, size=size, num_iters=200, num_samples=400, executor=executor,
                     progress=False)
            p = vsbc_symmetry_pvalues(q)
            means = [float(v.mean()) for v in q.values()]
            print(f"| {name} | {size} | {', '.join(q)} | {min(means):.3f}..{max(means):.3f} | {min(p.values()):.2g} "
                  f"({min(p, key=p.get)}) | {time.perf_counter() - t0:.1f} |", flush=True)
    finally:
        executor.close()


if __name__ == "__main__":
    main()
