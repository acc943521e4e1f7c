"""inferlab sbc | geweke: calibration of a sampler on problems drawn from the model's prior (sizes and sampler
settings from the registry's calibration entry of the model)."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from inference.cli.common import (UsageError, add_model_options, add_overwrite_option, executor, make_model, nonneg_int,
                                  positive_int, spec_of)

__all__ = ["add_parsers"]


def _calibration(args: argparse.Namespace):
    spec = spec_of(args.model)
    if spec.calibration is None:
        raise UsageError(f"{spec.name} has no calibration settings (it cannot simulate)")
    return spec, make_model(spec, args, args.K, calibration=True)


def _size(spec, args: argparse.Namespace) -> tuple:
    default = spec.calibration.size
    if args.size is None:
        return default
    if len(args.size) != len(default):
        raise UsageError(f"--size for {spec.name} takes {len(default)} numbers, like {' '.join(map(str, default))}")
    try:
        size = tuple(float(v) if isinstance(d, float) else int(v) for v, d in zip(args.size, default))
    except ValueError:
        raise UsageError(f"--size: {' '.join(args.size)} are not numbers like {' '.join(map(str, default))}") from None
    return size


def cmd_sbc(args: argparse.Namespace) -> int:
    from inference.workflows.calibration import sbc

    spec, model = _calibration(args)
    pool = executor(args)
    start = time.perf_counter()
    try:
        res = sbc(model, args.method, num_replications=args.replications, size=_size(spec, args), num_draws=args.draws,
                  warmup=args.warmup or spec.calibration.warmup, thin=args.thin or spec.calibration.thin,
                  bins=args.bins, seed=args.seed, executor=pool,
                  out=Path(args.out) / "replications" if args.out else None, progress=not args.no_progress,
                  overwrite=args.overwrite, relabel=args.relabel)
    finally:
        pool.close()
    wall = time.perf_counter() - start
    print(f"SBC of {args.method} on {args.model} ({res.label}): {args.replications} replications, {res.num_draws} "
          f"draws each, {wall:.1f} s on {pool.name}")
    for k, p in res.pvalues.items():
        print(f"  {k:>16s}  chi-square uniformity p = {p:.4f}")
    print(f"  smallest p x {len(res.pvalues)} (Bonferroni) = {res.min_pvalue_bonferroni:.4f}"
          + ("   <- not uniform: the sampler or a derivation is suspect" if res.min_pvalue_bonferroni < 0.01 else ""))
    if args.out:
        path = Path(args.out) / f"sbc_{args.model}_{args.method}.png"
        res.plot(path)
        print(f"wrote {path}")
    return 1 if res.min_pvalue_bonferroni < 0.01 else 0


def cmd_geweke(args: argparse.Namespace) -> int:
    import pandas as pd

    from inference.workflows.calibration import geweke

    spec, model = _calibration(args)
    res = geweke(model, _size(spec, args), num_marginal=args.marginal, num_successive=args.successive,
                 seed=args.seed, progress=not args.no_progress)
    with pd.option_context("display.width", 200, "display.precision", 4):
        print(res.table.to_string(index=False))
    print(f"max |z| = {res.max_abs_z:.2f}" + ("   <- the Gibbs sweep does not leave the posterior invariant"
                                              if res.max_abs_z > 4 else ""))
    return 1 if res.max_abs_z > 4 else 0


def _common(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("model", help="model name (see `inferlab models`)")
    sp.add_argument("-K", type=positive_int, default=None, help="factors or components (default 2)")
    sp.add_argument("--hyper", nargs="*", default=[], metavar="NAME=VALUE")
    sp.add_argument("--size", nargs="+", default=None,
                    help="problem size drawn from the prior (the model's simulate argument, e.g. N M for poisson-mf, "
                         "n d for mixtures, N M fraction for gaussian-mf); small by default")
    sp.add_argument("--seed", type=nonneg_int, default=0)
    sp.add_argument("--no-progress", action="store_true")
    add_model_options(sp, targets=("model",))


def add_parsers(sub) -> None:
    sb = sub.add_parser("sbc", help="simulation-based calibration of a sampler (rank histograms, uniformity tests)")
    _common(sb)
    sb.add_argument("--method", choices=["gibbs", "nuts"], default="gibbs")
    sb.add_argument("--replications", type=positive_int, default=200)
    sb.add_argument("--draws", type=positive_int, default=99,
                    help="posterior draws per replication (bins must divide draws+1)")
    sb.add_argument("--bins", type=positive_int, default=10)
    sb.add_argument("--warmup", type=nonneg_int, default=None)
    sb.add_argument("--thin", type=positive_int, default=None)
    sb.add_argument("--relabel", action="store_true",
                    help="mixtures: also rank the component parameters pi[k], mu[k,j] after pivotal relabelling (the "
                         "pivot from an independent chain)")
    sb.add_argument("--scheduler", default=None,
                    help="'local' processes (default), 'serial', or a Dask scheduler address tcp://HOST:PORT")
    sb.add_argument("--workers", type=positive_int, default=None, help="local processes (default: one per core)")
    add_overwrite_option(sb)
    sb.add_argument("--out", default=None, help="folder: replications/ (resumable) and the rank-histogram plot")
    sb.set_defaults(func=cmd_sbc)

    gw = sub.add_parser("geweke", help="Geweke's joint-distribution test of a Gibbs sampler")
    _common(gw)
    gw.add_argument("--marginal", type=positive_int, default=3000, help="marginal-conditional draws")
    gw.add_argument("--successive", type=positive_int, default=6000, help="successive-conditional sweeps")
    gw.set_defaults(func=cmd_geweke)
