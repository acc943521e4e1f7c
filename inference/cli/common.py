"""What every command shares: the model, data and method options read from the registry (no model table here),
turning them into a model, data and method keywords, the sweep executor, and the error type that exits with 2."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from models import registry

__all__ = ["UsageError", "positive_int", "nonneg_int", "nonneg_float", "check_output_folder", "add_model_arguments",
           "add_model_options", "add_sweep_options", "add_overwrite_option", "make_model", "load_data", "method_kwargs",
           "executor", "spec_of"]


class UsageError(ValueError):
    """Bad command-line input: printed as one line, exit status 2."""


def _int_at_least(minimum: int, what: str):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be an integer >= {minimum}, got {value}")
        return value
    parse.__name__ = parse.__doc__ = f"argparse type: an integer >= {minimum} ({what})"
    return parse


positive_int = _int_at_least(1, "sizes, counts of iterations, draws, chains, components")
nonneg_int = _int_at_least(0, "seeds, warm-up sweeps")


def nonneg_float(text: str) -> float:
    """argparse type: a finite number >= 0 (tolerances)."""
    import math

    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {text}")
    return value


def check_output_folder(path: str, flag: str = "--out") -> Path:
    """Before any work: ``path`` is a folder that exists or can be made, and a file can be written in it."""
    import tempfile

    folder = Path(path)
    if folder.exists() and not folder.is_dir():
        raise UsageError(f"{flag} {path}: exists and is not a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".inferlab-probe-"):
            pass
    except OSError as exc:
        raise UsageError(f"{flag} {path}: cannot write there ({exc.strerror or exc})") from None
    return folder


def spec_of(name: str) -> registry.ModelSpec:
    try:
        return registry.get(name)
    except registry.UnknownModel as exc:
        raise UsageError(str(exc)) from None


def add_model_options(sp: argparse.ArgumentParser,
                      targets: tuple[str, ...] = ("model", "data", "file", "report", "cavi")) -> None:
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
        if opt.const is not None:
            kw = dict(dest=opt.dest, action="store_const", const=opt.const, default=None, help=kw["help"])
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
    sp.add_argument("-K", type=positive_int, default=None,
                    help="factors or components (default: the model's or data set's)")
    sp.add_argument("--hyper", nargs="*", default=[], metavar="NAME=VALUE",
                    help="numeric hyperparameters, e.g. a_theta=1 b_theta=0.5")
    sp.add_argument("--seed", type=nonneg_int, default=0)
    sp.add_argument("--out", default=None, help="output folder")
    if synthetic:
        sp.add_argument("--rows", type=positive_int, default=None, help="synthetic data: rows (points for mixtures)")
        sp.add_argument("--cols", type=positive_int, default=None,
                        help="synthetic data: columns (dimensions for mixtures)")
        sp.add_argument("--true-K", type=positive_int, default=3, help="synthetic data: factors of the generating model")
    sp.add_argument("--iters", type=positive_int, default=None, help="iterations (CAVI sweeps, SVI steps, EM sweeps)")
    sp.add_argument("--samples", type=positive_int, default=None,
                    help="kept draws per chain (Gibbs, NUTS); draws from q (CAVI, SVI, stochastic VI; default 100) "
                         "or from the exact posterior")
    sp.add_argument("--no-progress", action="store_true", help="no progress bars")
    add_model_options(sp)


def add_sweep_options(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("--scheduler", default=None, help="where the runs go: 'local' processes (default), 'serial', or "
                                                      "a Dask scheduler tcp://HOST:PORT")
    sp.add_argument("--workers", type=positive_int, default=None, help="local processes (default: one per core)")
    add_overwrite_option(sp)
    if not any(a.dest == "out" for a in sp._actions):
        sp.add_argument("--out", default=None, help="folder: runs/ (one JSON per finished run: a rerun skips them), "
                                                    "runs.csv and the criterion-vs-K plot")
    if not any(a.dest == "no_progress" for a in sp._actions):
        sp.add_argument("--no-progress", action="store_true", help="no progress bar")


def add_overwrite_option(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("--overwrite", action="store_true",
                    help="--out holds another run: discard it and start again (without this, such a folder is refused)")


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
    is_file = name != "synthetic" and not any(d.name == name for d in spec.datasets)
    given = [o.flag for o in spec.options if o.target == "file" and getattr(args, o.dest, None) is not None]
    if given and not is_file:
        raise UsageError(f"{', '.join(given)}: options for reading a file, but --data is {name!r}")
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
    values = _check_own_options(spec, args)
    try:
        return spec.read_file(path, **spec.option_values(values, "file"))
    except (OSError, UnicodeDecodeError) as exc:
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

    from models.data import check_device

    try:
        device = str(check_device(getattr(args, "device", "cpu")))
    except ValueError as exc:
        raise UsageError(f"--{exc}") from None
    kw: dict[str, Any] = {"seed": args.seed, "progress": not args.no_progress,
                          "dtype": torch.float32 if getattr(args, "float32", False) else torch.float64,
                          "device": device}
    m = args.method
    if m in ("cavi", "svi", "em", "bp", "stochastic"):
        kw["num_iters"] = args.iters
    if m == "stochastic":
        kw.update({k: getattr(args, k) for k in ("batch_size", "tau", "kappa", "local_iters")
                   if getattr(args, k, None) is not None})
    elif any(getattr(args, k, None) is not None for k in ("batch_size", "tau", "kappa", "local_iters")):
        raise UsageError("--batch-size, --tau, --kappa and --local-iters are options of --method stochastic")
    if m in ("gibbs", "nuts"):
        kw["num_samples"] = args.samples if args.samples is not None else args.iters
        kw["num_chains"] = args.chains
    if m in ("exact", "cavi", "svi", "stochastic") and args.samples:
        kw["num_samples"] = args.samples  # (draws from the exact posterior, or from q)
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
