"""Every registered model fitted every way on its small synthetic problem (`inferlab compare MODEL` with the
registry's defaults and the spec's benchmark options), and the
cost per effective sample of Gibbs against NUTS, measured in the same run.

    python benchmarks/compare_bench.py [--models poisson-mf bayes-gmm ...] [--out DIR]
    python benchmarks/compare_bench.py --ratio poisson-mf --seeds 0 1 2 [--gibbs-samples 4000 --gibbs-warmup 1000]

Prints one markdown table per model and a summary line of seconds per effective sample (the worst invariant
quantity) of Gibbs and NUTS and their ratio. With --out, each model's report (report.md, plots, <method>.nc) is
written to DIR/<model>.
"""

from __future__ import annotations

import argparse
import warnings

warnings.simplefilter("ignore")

import torch  # noqa: E402

from inference.workflows.compare import _markdown, compare  # noqa: E402
from models import registry  # noqa: E402

COLUMNS = ["method", "objective", "value", "heldout", "wall_s", "min_ess", "s_per_ess", "max_rhat", "psis_khat",
           "rel_rms", "max_abs_z", "sd_ratio"]


def problem(name: str):
    """The model and data of ``inferlab compare NAME`` with the registry's defaults (K=3, synthetic data of the
    default size from seed 0, true K 3) and the spec's benchmark options."""
    spec = registry.get(name)
    model = spec.make(3 if spec.takes_K else None, options=spec.benchmark_options)
    rows, cols = spec.synthetic_size
    return spec, model, spec.synthetic(rows, cols, 3, torch.Generator().manual_seed(0))


def run(name: str, out: str | None) -> None:
    spec, model, data = problem(name)
    comp = compare(model, data, methods=list(spec.compare_methods), seed=0, out=f"{out}/{name}" if out else None,
                   progress=False)
    t, ref = comp.table, comp.reference
    rename = {c: n for c in t.columns for n, key in (("heldout", "heldout"), ("rel_rms", "rel_rms"),
                                                     ("max_abs_z", "max_abs_z"), ("sd_ratio", "sd_ratio")) if key in c}
    t = t.rename(columns=rename)
    cols = [c for c in COLUMNS if c in t.columns]
    print(f"\n### {name} (reference: {ref})\n")
    print(_markdown(t[cols]))
    rows = t.set_index("method")
    if {"gibbs", "nuts"} <= set(rows.index):
        g, n = rows.loc["gibbs", "s_per_ess"], rows.loc["nuts", "s_per_ess"]
        print(f"\n{name}: seconds per effective sample, Gibbs {g:.4g}, NUTS {n:.4g}: Gibbs {n / g:.1f}x cheaper")


def ratio(model_name: str, seeds: list[int], samples: int, warmup: int) -> None:
    """Gibbs vs NUTS seconds per effective sample (worst invariant quantity) on the compare benchmark's problem, for
    several seeds (each seed: its own data split and chains), and the median ratio."""
    import numpy as np

    _, model, data = problem(model_name)
    print(f"| {model_name} seed | Gibbs min ESS | Gibbs s | Gibbs s/ESS | Gibbs max R-hat | NUTS min ESS | NUTS s | "
          "NUTS s/ESS | NUTS max R-hat | ratio |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    ratios = []
    for seed in seeds:
        t = compare(model, data, methods=["gibbs", "nuts"], seed=seed, progress=False,
                    settings={"gibbs": {"num_samples": samples, "warmup": warmup}}).table.set_index("method")
        g, n = t.loc["gibbs"], t.loc["nuts"]
        ratios.append(n["s_per_ess"] / g["s_per_ess"])
        print(f"| {seed} | {g['min_ess']:.0f} | {g['wall_s']:.2f} | {g['s_per_ess']:.4f} | {g['max_rhat']:.3f} | "
              f"{n['min_ess']:.0f} | {n['wall_s']:.1f} | {n['s_per_ess']:.4f} | {n['max_rhat']:.3f} | "
              f"{ratios[-1]:.1f}x |", flush=True)
    print(f"median ratio (NUTS s/ESS over Gibbs s/ESS): {np.median(ratios):.1f}x")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=None, help="registry names (default: every registered model)")
    ap.add_argument("--out", default=None)
    ap.add_argument("--ratio", default=None, metavar="MODEL", help="only Gibbs vs NUTS cost per effective sample")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--gibbs-samples", type=int, default=1000)
    ap.add_argument("--gibbs-warmup", type=int, default=500)
    args = ap.parse_args()
    if args.ratio:
        ratio(args.ratio, args.seeds, args.gibbs_samples, args.gibbs_warmup)
        return
    for m in args.models or registry.names():
        run(m, args.out)


if __name__ == "__main__":
    main()
