"""inferlab fit | compare | check | models: one model, one or every method, or the derivation checks."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from inference.cli.common import (UsageError, add_model_arguments, add_overwrite_option, default_K, load_data,
                                  make_model, method_kwargs, nonneg_float, positive_int, spec_of)

__all__ = ["add_parsers"]

from inference import METHOD_NAMES  # noqa: E402  (the names only; the methods load on use)


def cmd_fit(args: argparse.Namespace) -> int:
    from inference import METHODS

    if args.method not in METHOD_NAMES:
        raise UsageError(f"unknown method {args.method!r}; available: {', '.join(METHOD_NAMES)}")
    spec = spec_of(args.model)
    K = args.K if args.K is not None else default_K(spec, args.data)
    model = make_model(spec, args, K)
    data = load_data(spec, args)
    if args.iters is None:
        args.iters = 200
    if args.scheduler is not None or args.blocks is not None:
        result = _fit_distributed(model, data, args)
    else:
        result = METHODS[args.method](model, data, **method_kwargs(spec, args))
    print(result.describe())
    if spec.fit_report is not None:
        context = {"data": args.data, "data_options": spec.option_values(vars(args), "data"),
                   "report_options": spec.option_values(vars(args), "report")}
        for line in spec.fit_report(model, result.data, result, context):
            print(line)
    if args.out:
        path = result.save(Path(args.out) / f"{args.method}.nc", site_draws=True if args.save_draws else None)
        print(f"saved {path}")
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    import pandas as pd

    from inference.workflows.compare import compare, reference_warning

    spec = spec_of(args.model)
    K = args.K if args.K is not None else default_K(spec, args.data)
    model = make_model(spec, args, K)
    data = load_data(spec, args)
    dataset = next((d for d in spec.datasets if d.name == args.data), None)
    if args.methods:
        methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    elif dataset is not None and dataset.methods is not None:
        methods = list(dataset.methods)
    else:  # NUTS only on small synthetic problems by default
        methods = [m for m in spec.compare_methods if args.data == "synthetic" or m != "nuts"]
    settings = {k: dict(v) for k, v in spec.compare_settings.items()}
    if args.iters:
        for m in ("cavi", "svi", "em", "bp"):
            settings.setdefault(m, {})["num_iters"] = args.iters
    if args.samples:
        settings.setdefault("gibbs", {}).update(num_samples=args.samples, warmup=args.samples // 2)
        settings.setdefault("nuts", {}).update(num_samples=args.samples, warmup=args.samples)
    for method, values in parse_method_settings(args.method_settings or [], methods).items():
        settings.setdefault(method, {}).update(values)
    comp = compare(model, data, methods=methods, seed=args.seed, settings=settings, out=args.out,
                   progress=not args.no_progress, overwrite=args.overwrite)
    with pd.option_context("display.width", 200, "display.max_columns", 20, "display.precision", 5):
        print(comp.table.to_string(index=False))
    print(f"reference method for agreement: {comp.reference}")
    for line in filter(None, reference_warning(comp)):
        print(line.replace("**", ""), file=sys.stderr)
    if args.out:
        print(f"wrote {', '.join(str(p) for p in comp.files)}")
    return 0


def parse_method_settings(items: list[str], methods: list[str]) -> dict[str, dict]:
    """--set METHOD.NAME=VALUE items as {method: {name: value}}: the method must be one compare runs and NAME a
    keyword argument of its fit function; VALUE is read as an integer, a number, true/false or none, else kept as
    text."""
    import inspect

    from inference import METHODS

    out: dict[str, dict] = {}
    for item in items:
        key, eq, text = item.partition("=")
        method, dot, name = key.partition(".")
        if not eq or not dot or not name:
            raise UsageError(f"--set {item!r}: expected METHOD.NAME=VALUE, e.g. nuts.num_samples=150")
        if method not in methods:
            raise UsageError(f"--set {item!r}: {method!r} is not among the methods compared ({', '.join(methods)})")
        params = inspect.signature(METHODS[method]).parameters
        allowed = [p for p in params if p not in ("model", "data", "seed", "progress", "callback")]
        if name not in allowed:
            raise UsageError(f"--set {item!r}: fit_{method} has no setting {name!r}; its settings: "
                             f"{', '.join(allowed)}")
        out.setdefault(method, {})[name] = _setting_value(text)
    return out


def _setting_value(text: str):
    low = text.strip().lower()
    if low in ("true", "false"):
        return low == "true"
    if low == "none":
        return None
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text


def cmd_check(args: argparse.Namespace) -> int:
    """Exit status 1 when a check fails."""
    from inference.workflows.checks import CHECKS, check_model

    spec = spec_of(args.model)
    prior = args.data == "prior"
    K = args.K if args.K is not None else (None if prior else default_K(spec, args.data))
    model = make_model(spec, args, K, calibration=prior)
    data = None if args.data == "prior" else load_data(spec, args)
    checks = [c.strip() for c in args.checks.split(",")] if args.checks else CHECKS
    report = check_model(model, data, seed=args.seed, checks=checks, mc_samples=args.mc_samples)
    print(report)
    return 0 if report.passed else 1


def cmd_models(args: argparse.Namespace) -> int:
    """Every registered model: its capabilities, data sets, hyperparameters and options."""
    from models import registry
    from models.protocol import capabilities

    for spec in registry.specs():
        try:
            caps = ", ".join(capabilities(spec.make()))
        except Exception as exc:  # a model that cannot be built with defaults still gets listed
            caps = f"(cannot build with defaults: {exc})"
        print(f"{spec.name}: {spec.summary}")
        print(f"  class          {spec.model_class if isinstance(spec.model_class, str) else spec.model_class.__name__}")
        print(f"  capabilities   {caps}")
        print(f"  data           synthetic ({spec.synthetic_help})"
              + "".join(f", {d.name} ({d.description})" for d in spec.datasets)
              + (f"; files: {spec.file_help}" if spec.read_file is not None else ""))
        print(f"  --hyper        {', '.join(spec.hyperparameters) or '(none)'}")
        if spec.options:
            print(f"  options        {', '.join(o.flag for o in spec.options)}")
    return 0


def add_parsers(sub) -> None:
    f = sub.add_parser("fit", help="fit one model by one method, print a summary and save the result")
    add_model_arguments(f)
    f.add_argument("--method", required=True, help="exact, cavi, gibbs, svi, nuts, bp (loopy belief propagation), "
                                                   "em (the posterior mode) or stochastic (closed-form stochastic VI)")
    f.add_argument("--chains", type=positive_int, default=2, help="chains (Gibbs, NUTS)")
    f.add_argument("--float32", action="store_true", help="float32 instead of float64 (closed-form methods)")
    f.add_argument("--device", default="cpu", help="torch device for closed-form methods (cpu, cuda)")
    f.add_argument("--batch-size", type=positive_int, default=None,
                   help="stochastic: rows per iteration (default: a tenth of the rows)")
    f.add_argument("--tau", type=nonneg_float, default=None, help="stochastic: steps rho_t = (tau + t)^-kappa (1)")
    f.add_argument("--kappa", type=nonneg_float, default=None, help="stochastic: step decay in (0.5, 1] (0.7)")
    f.add_argument("--local-iters", type=positive_int, default=None,
                   help="stochastic: local-step alternations per batch (1)")
    f.add_argument("--scheduler", default=None,
                   help="poisson-mf CAVI on a Dask cluster: 'local' (a LocalCluster, one process per core) or "
                        "tcp://HOST:PORT; row blocks of the counts stay on the workers")
    f.add_argument("--blocks", type=positive_int, default=None,
                   help="with --scheduler: row blocks (default: two per worker)")
    f.add_argument("--save-draws", action="store_true",
                   help="--out: also write the variational methods' draws of every site and the pointwise log "
                        "likelihood (by default their result file holds q's parameters, the point estimates and the "
                        "draws of the invariant quantities; samplers always write their draws)")
    f.set_defaults(func=cmd_fit)

    c = sub.add_parser("compare", help="fit several methods on one data set and tabulate them")
    add_model_arguments(c)
    c.add_argument("--methods", default=None, help="comma-separated from cavi, gibbs, svi, nuts, em (default: the "
                                                   "model's; NUTS only on synthetic data)")
    c.add_argument("--set", nargs="+", default=None, metavar="METHOD.NAME=VALUE", dest="method_settings",
                   help="a method's setting, e.g. nuts.num_samples=150 gibbs.thin=5 svi.lr=0.02 (the keyword "
                        "arguments of inference.fit_<method>; they override the model's and --iters/--samples)")
    add_overwrite_option(c)
    c.set_defaults(func=cmd_compare)

    k = sub.add_parser("check", help="run the derivation checks (check_model) on a model; exit 1 if one fails")
    add_model_arguments(k)
    k.set_defaults(data="prior")
    k.add_argument("--checks", default=None, help="comma-separated subset of conditional, cavi-sweep, cavi-block, "
                                                  "elbo-mc, guide, em-stationary, geweke (default: all)")
    k.add_argument("--mc-samples", type=positive_int, default=1000, help="draws of the Monte Carlo ELBO")
    k.set_defaults(func=cmd_check)

    m = sub.add_parser("models", help="list the registered models, their capabilities, data sets and options")
    m.set_defaults(func=cmd_models)


def _fit_distributed(model, data, args):
    """fit --scheduler: data-parallel CAVI (inference/distributed.py); refused for other methods and models."""
    from inference.distributed import fit_cavi_distributed

    if args.method != "cavi" or model.name != "poisson-mf":
        raise UsageError(f"--scheduler / --blocks run Poisson MF CAVI on a Dask cluster; got --method {args.method} on "
                         f"{model.name}")
    if getattr(args, "init", None) not in (None, "default"):
        raise UsageError("--scheduler: distributed CAVI starts from the default initialisation only")
    scheduler = None if args.scheduler in (None, "local") else args.scheduler
    if scheduler is not None and "://" not in scheduler:
        raise UsageError(f"--scheduler must be 'local' or an address like tcp://HOST:PORT, got {scheduler!r}")
    return fit_cavi_distributed(model, data, seed=args.seed, num_iters=args.iters, num_blocks=args.blocks,
                                scheduler=scheduler, progress=not args.no_progress,
                                **({"num_samples": args.samples} if args.samples else {}))
