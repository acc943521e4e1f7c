"""What every command shares: the model, data and method options read from the registry (no model table here),
turning them into a model, data and method keywords, the sweep executor, and the error type that exits with 2."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from models import registry

__all__ = ["UsageError", "add_model_arguments", "add_model_options", "add_sweep_options", "make_model", "load_data",
           "method_kwargs", "executor", "spec_of"]


class UsageError(ValueError):
    """Bad command-line input: printed as one line, exit status 2."""


def spec_of(name: str) -> registry.ModelSpec:
    try:
        return registry.get(name)
    except registry.UnknownModel as exc:
        raise UsageError(str(exc)) from None


def add_model_options(sp: argparse.ArgumentParser, targets: tuple[str, ...] = ("model", "data", "report", "cavi")) -> None:
    """The options every registered model declares (ModelSpec.options), each added once; a model refuses the ones
    that are not its own (see ``make_model``)."""
    seen: dict[str, registry.Option] = {}
    for spec in registry.specs():
        for opt in spec.options:
            if opt.target in targets and opt.flag not in seen:
                seen[opt.flag] = opt
    for opt in seen.values():
        owners = [s.name for s in registry.specs() if any(o.flag == opt.flag for o in s.options)]
        kw = dict(dest=opt.dest, type=opt.type, default=None, help=f"{', '.join(owners)}: {opt.help}")
        if opt.nargs is not None:
            kw["nargs"] = opt.nargs
        if opt.choices is not None:
            kw["choices"] = opt.choices
        if opt.metavar is not None:
            kw["metavar"] = opt.metavar
        sp.add_argument(opt.flag, **kw)
    sp.set_defaults(model_option_flags=tuple(seen))  # (a command's own option may share a dest with one not added)


def add_model_arguments(sp: argparse.ArgumentParser, *, synthetic: bool = True) -> None:
    """model, --data, -K, --hyper, --seed, --out, the synthetic sizes, --iters, --samples, --no-progress and every
    model's own options."""
    sp.add_argument("model", help=f"model name ({', '.join(registry.names())})")
    sp.add_argument("--data", default="synthetic",
                    help="'synthetic', a data set name of the model, or a file; `inferlab models` lists them")
    sp.add_argument("-K", type=int, default=None, help="factors or components (default: the model's or data set's)")
    sp.add_argument("--hyper", nargs="*", default=[], metavar="NAME=VALUE",
                    help="numeric hyperparameters, e.g. a_theta=1 b_theta=0.5")
    sp.add_argument("--seed", type=int, default=0)
    sp.add_argument("--out", default=None, help="output folder")
    if synthetic:
        sp.add_argument("--rows", type=int, default=None, help="synthetic data: rows (points for mixtures)")
        sp.add_argument("--cols", type=int, default=None, help="synthetic data: columns (dimensions for mixtures)")
        sp.add_argument("--true-K", type=int, default=3, help="synthetic data: factors of the generating model")
    sp.add_argument("--iters", type=int, default=None, help="iterations (CAVI sweeps, SVI steps, EM sweeps)")
    sp.add_argument("--samples", type=int, default=None, help="kept draws per chain (Gibbs, NUTS)")
    sp.add_argument("--no-progress", action="store_true", help="no progress bars")
    add_model_options(sp)


def add_sweep_options(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("--scheduler", default=None, help="where the runs go: 'local' processes (default), 'serial', or "
                                                      "a Dask scheduler tcp://HOST:PORT")
    sp.add_argument("--workers", type=int, default=None, help="local processes (default: one per core)")
    if not any(a.dest == "out" for a in sp._actions):
        sp.add_argument("--out", default=None, help="folder: runs/ (one JSON per finished run: a rerun skips them), "
                                                    "runs.csv and the criterion-vs-K plot")
    if not any(a.dest == "no_progress" for a in sp._actions):
        sp.add_argument("--no-progress", action="store_true", help="no progress bar")


def _check_own_options(spec: registry.ModelSpec, args: argparse.Namespace) -> dict[str, Any]:
    """The parsed model options as a dict; an option given for a model that does not declare it is an error."""
    own = {o.flag for o in spec.options}
    added = set(getattr(args, "model_option_flags", ()))
    for other in registry.specs():
        for opt in other.options:
            if opt.flag in added and opt.flag not in own and getattr(args, opt.dest, None) is not None:
                raise UsageError(f"{opt.flag} is not an option of {spec.name}")
    return {o.dest: getattr(args, o.dest, None) for o in spec.options}


def parse_hyper(items: list[str]) -> dict[str, float]:
    kw: dict[str, float] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep:
            raise UsageError(f"--hyper expects NAME=VALUE, got {item!r}")
        try:
            kw[key] = float(value)
        except ValueError:
            raise UsageError(f"--hyper {key}: {value!r} is not a number") from None
    return kw


def make_model(spec: registry.ModelSpec, args: argparse.Namespace, K: int, *, calibration: bool = False) -> Any:
    """The model from K, --hyper and the model options (calibration: the spec's calibration defaults first)."""
    values = _check_own_options(spec, args)
    options = spec.option_values(values, "model")
    hyper = parse_hyper(args.hyper)
    try:
        if calibration:
            return spec.calibration_model(K, hyper, options)
        return spec.make(K, hyper, options)
    except TypeError as exc:  # a constructor keyword the class does not take
        raise UsageError(f"{spec.name}: {exc}") from None


def default_K(spec: registry.ModelSpec, data_name: str) -> int:
    for d in spec.datasets:
        if d.name == data_name and d.default_K is not None:
            return d.default_K
    return spec.default_K


def load_data(spec: registry.ModelSpec, args: argparse.Namespace) -> Any:
    """--data: "synthetic" (spec.synthetic with --rows, --cols, --true-K, --seed), a data set name, or a file."""
    import torch

    name = args.data
    names = ", ".join(["synthetic"] + [d.name for d in spec.datasets])
    if name == "synthetic":
        rows = args.rows if args.rows is not None else spec.synthetic_size[0]
        cols = args.cols if args.cols is not None else spec.synthetic_size[1]
        for flag, v in (("--rows", rows), ("--cols", cols), ("--true-K", args.true_K)):
            if v < 1:
                raise UsageError(f"{flag} must be >= 1, got {v}")
        return spec.synthetic(rows, cols, args.true_K, torch.Generator().manual_seed(args.seed))
    if any(d.name == name for d in spec.datasets):
        import inspect

        values = _check_own_options(spec, args)
        load = spec.dataset(name).load
        options = spec.option_values(values, "data")
        if "K" in inspect.signature(load).parameters:
            options["K"] = args.K if args.K is not None else default_K(spec, name)
        return load(**options)
    path = Path(name)
    if not path.exists() or spec.read_file is None:
        raise UsageError(f"--data {name!r}: not a data set name for {spec.name} ({names}) nor a file"
                         + ("" if spec.read_file is not None else f" ({spec.name} reads no files)"))
    import pandas as pd

    try:
        return spec.read_file(path)
    except (OSError, pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise UsageError(f"--data {name!r}: cannot read the file ({exc})") from None


def cavi_options(spec: registry.ModelSpec, args: argparse.Namespace) -> dict[str, Any]:
    """The model's CAVI options given on the command line (Option target "cavi"; a convert may return several)."""
    out: dict[str, Any] = {}
    for opt in spec.options:
        v = getattr(args, opt.dest, None)
        if opt.target == "cavi" and v is not None:
            converted = opt.convert(v) if opt.convert is not None else {opt.dest: v}
            out.update(converted)
    return out


def method_kwargs(spec: registry.ModelSpec, args: argparse.Namespace) -> dict[str, Any]:
    import torch

    kw: dict[str, Any] = {"seed": args.seed, "progress": not args.no_progress,
                          "dtype": torch.float32 if getattr(args, "float32", False) else torch.float64,
                          "device": getattr(args, "device", "cpu")}
    m = args.method
    if m in ("cavi", "svi", "em", "bp"):
        kw["num_iters"] = args.iters
    if m in ("gibbs", "nuts"):
        kw["num_samples"] = args.samples or args.iters
        kw["num_chains"] = args.chains
    if m == "exact" and args.samples:
        kw["num_samples"] = args.samples
    if m == "cavi":
        kw.update(cavi_options(spec, args))
    if m == "nuts":
        kw["dtype"] = torch.float64
    return kw


def executor(args: argparse.Namespace, default: Any = None):
    from inference.workflows.sweep import get_executor

    try:
        return get_executor(args.scheduler or default, workers=args.workers)
    except ValueError as exc:
        raise UsageError(f"--scheduler: {exc}") from None
