"""The one model registry: name -> model class, data sets, synthetic generator, defaults, command-line options and
calibration settings. The command line, compare, calibration, selection, the tests and the benchmarks read it;
no other model table exists.

    from models import registry
    spec = registry.get("poisson-mf")
    model = spec.make(K=10, hyper={"a_theta": 0.3})
    data = spec.load("lastfm")                      # or spec.synthetic(rows, cols, true_K, generator)

A new model registers itself where it is defined (``registry.register(ModelSpec(...))``); see
docs/ADDING_A_MODEL.md. The built-in specs live next to their models (models/<family>/spec.py) and are read on
first use. Importing this module is cheap: specs name their classes by import path and import nothing heavy.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

__all__ = ["FILE_OPTIONS", "Option", "DataSet", "Calibration", "ModelSpec", "register", "unregister", "get", "names", "specs",
           "model_class", "UnknownModel", "load_plugin"]

_BUILTIN_SPECS = ("models.poisson_mf.spec", "models.gaussian_mf.spec", "models.mixture.spec", "models.grid.spec")


@dataclass(frozen=True)
class Option:
    """A model option beyond K and the numeric hyperparameters, exposed on the command line as ``flag``.

    target: "model" (a constructor keyword), "data" (a keyword of the data set loaders), "file" (a keyword of
    ``read_file``) or "report" (read by the spec's fit report). ``convert`` turns the parsed value into what the target takes (e.g. a list into a tuple)."""

    flag: str
    dest: str
    help: str
    target: str = "model"
    type: Callable = str
    default: Any = None
    nargs: int | str | None = None
    choices: tuple | None = None
    metavar: Any = None
    convert: Callable | None = None
    const: Any = None  # a flag without a value: given, the option takes this value


def _columns(text: str) -> tuple[str, str, str]:
    parts = tuple(p.strip() for p in text.split(","))
    if len(parts) != 3 or not all(parts):
        raise ValueError(f"--columns expects ROW,COL,VALUE (three column names), got {text!r}")
    return parts


# The options of the long-format matrix readers (models.readers), shared by the matrix-factorisation specs.
FILE_OPTIONS = (
    Option("--columns", "columns", "long-format .csv / .parquet files: the row, col and value column names, e.g. "
           "user,item,rating (default: found by name)", target="file", metavar="ROW,COL,VALUE", convert=_columns),
    Option("--no-header", "header", "long-format .csv files: the file has no header line (its first three columns "
           "are row, col, value)", target="file", const=False),
)


@dataclass(frozen=True)
class DataSet:
    """A named data set: ``load(**data_options)`` returns data the model's ``prepare`` accepts (a loader that
    declares a parameter ``K`` also gets the model's K). ``methods``: the methods that suit it (compare's default;
    None: the spec's ``compare_methods``)."""

    name: str
    load: Callable[..., Any]
    description: str = ""
    default_K: int | None = None
    methods: tuple[str, ...] | None = None


@dataclass(frozen=True)
class Calibration:
    """Settings for SBC, Geweke and VSBC on problems drawn from the prior: the problem ``size`` (the model's
    ``simulate`` argument), sampler warm-up and thinning, and constructor keywords that make the model generative
    (for example no data-dependent centring)."""

    size: tuple
    warmup: int = 100
    thin: int = 3
    model_options: dict = field(default_factory=dict)


@dataclass(frozen=True)
class ModelSpec:
    """Everything the command line and the workflows need to know about one model.

    Attributes:
        name: the registry name (the model's ``name``), e.g. "poisson-mf".
        model_class: the class, or its import path "package.module:Class" (imported on first use).
        summary: one line for ``inferlab --help``.
        hyperparameters: numeric constructor arguments settable as ``--hyper NAME=VALUE``.
        synthetic: synthetic(rows, cols, true_K, generator) -> data, a small problem for demos and tests.
        synthetic_size: default (rows, cols); ``synthetic_help`` says what they mean for this model.
        datasets: named real data sets.
        read_file: read_file(path, **file_options) -> data, for user files (None: files are not accepted); the
            options with target "file" are its keywords.
        file_help: the accepted file formats.
        default_K: K when the user gives none (a data set may override it); None for a model without K.
        options: extra command-line options (see Option).
        calibration: SBC / Geweke / VSBC settings, or None when the model cannot simulate.
        fit_report: fit_report(model, data, result, context) -> lines printed after ``inferlab fit``; context holds
            the data set name and the parsed options.
        compare_methods: the methods ``inferlab compare`` runs by default.
        benchmark_options: model options of the comparison benchmark (benchmarks/compare_bench.py), e.g. a prior
            that every method supports.
        compare_settings: per-method keyword overrides of compare's defaults for this model.
        compare_figures: "module:function" drawing extra figures for compare's report, called as
            function(comparison, model, out_folder) -> list of paths (named by path: models import no plotting).
    """

    name: str
    model_class: type | str
    summary: str
    hyperparameters: tuple[str, ...]
    synthetic: Callable[..., Any]
    synthetic_size: tuple[int, int] = (20, 30)
    synthetic_help: str = "rows, columns"
    datasets: tuple[DataSet, ...] = ()
    read_file: Callable[[Path], Any] | None = None
    file_help: str = ""
    default_K: int | None = 3
    options: tuple[Option, ...] = ()
    calibration: Calibration | None = None
    fit_report: Callable[..., list[str]] | None = None
    compare_methods: tuple[str, ...] = ("cavi", "gibbs", "svi", "nuts", "em")
    benchmark_options: dict = field(default_factory=dict)
    compare_settings: dict = field(default_factory=dict)
    compare_figures: str | None = None

    @property
    def cls(self) -> type:
        if isinstance(self.model_class, str):
            module, _, attr = self.model_class.partition(":")
            return getattr(importlib.import_module(module), attr)
        return self.model_class

    def dataset(self, name: str) -> DataSet:
        for d in self.datasets:
            if d.name == name:
                return d
        known = ", ".join(["synthetic"] + [d.name for d in self.datasets])
        raise ValueError(f"data set {name!r} is not one of {self.name}'s ({known})")

    def option_values(self, values: dict[str, Any], target: str) -> dict[str, Any]:
        """The options of one target ("model", "data", "report") from parsed values (None values left out)."""
        out = {}
        for opt in self.options:
            if opt.target == target and values.get(opt.dest) is not None:
                v = values[opt.dest]
                out[opt.dest] = opt.convert(v) if opt.convert is not None else v
        return out

    @property
    def takes_K(self) -> bool:
        """Whether the model has a number of factors or components K."""
        import dataclasses

        cls = self.cls
        return dataclasses.is_dataclass(cls) and "K" in {f.name for f in dataclasses.fields(cls)}

    def make(self, K: int | None = None, hyper: dict[str, float] | None = None,
             options: dict[str, Any] | None = None) -> Any:
        """The model with K (None: the default), numeric hyperparameters (names checked against
        ``hyperparameters``) and model options."""
        hyper = dict(hyper or {})
        unknown = sorted(set(hyper) - set(self.hyperparameters))
        if unknown:
            raise ValueError(f"unknown hyperparameter(s) {unknown} for {self.name}; known: "
                             f"{', '.join(self.hyperparameters) or '(none)'}")
        kw = dict(hyper, **(options or {}))
        if self.takes_K:
            kw["K"] = self.default_K if K is None else K
        elif K is not None:
            raise ValueError(f"{self.name} has no K (it has no factors or components to count)")
        return self.cls(**kw)

    def calibration_model(self, K: int | None = None, hyper: dict[str, float] | None = None,
                          options: dict[str, Any] | None = None) -> Any:
        """The model for calibration: ``make`` with the calibration's model options as defaults (K defaults to 2)."""
        if self.calibration is None:
            raise ValueError(f"{self.name} declares no calibration settings (it cannot simulate)")
        merged = {k: v for k, v in self.calibration.model_options.items() if k not in (hyper or {})}  # the user's win
        merged.update(options or {})
        return self.make(2 if K is None and self.takes_K else K, hyper, merged)


class UnknownModel(ValueError):
    """No model of that name is registered."""


_REGISTRY: dict[str, ModelSpec] = {}
_loaded = False


def _ensure_builtins() -> None:
    global _loaded
    if not _loaded:
        _loaded = True
        for module in _BUILTIN_SPECS:
            importlib.import_module(module)


def register(spec: ModelSpec, *, replace: bool = False) -> ModelSpec:
    """Add a model. Registering a name twice is an error unless ``replace`` (a module imported twice re-registers
    the same class, which is allowed)."""
    _ensure_builtins()
    old = _REGISTRY.get(spec.name)
    if old is not None and not replace and old.model_class != spec.model_class:
        raise ValueError(f"a model named {spec.name!r} is already registered ({old.model_class}); "
                         f"pass replace=True to override it")
    _REGISTRY[spec.name] = spec
    return spec


def unregister(name: str) -> None:
    _REGISTRY.pop(name, None)


def get(name: str) -> ModelSpec:
    _ensure_builtins()
    if name not in _REGISTRY:
        raise UnknownModel(f"unknown model {name!r}; available: {', '.join(names())}")
    return _REGISTRY[name]


def names() -> list[str]:
    _ensure_builtins()
    return list(_REGISTRY)


def specs() -> list[ModelSpec]:
    _ensure_builtins()
    return list(_REGISTRY.values())


def model_class(name: str) -> type | None:
    """The class registered under ``name`` (None when there is none): used to rebuild a model from a saved result."""
    _ensure_builtins()
    spec = _REGISTRY.get(name)
    return spec.cls if spec is not None else None


def load_plugin(target: str) -> None:
    """Import a module (dotted name) or a Python file that registers models, e.g. ``examples/hierarchical_poisson.py``.

    A file is imported by its stem with its folder put on sys.path, so that worker processes (which inherit
    sys.path) can unpickle its models."""
    import sys

    path = Path(target)
    if target.endswith(".py") or path.is_file():
        if not path.is_file():
            raise ValueError(f"plugin {target!r}: no such file")
        folder, module = str(path.resolve().parent), path.stem
        loaded = sys.modules.get(module)
        if loaded is not None:
            if Path(getattr(loaded, "__file__", "") or "").resolve() != path.resolve():
                raise ValueError(f"plugin {target!r}: a different module named {module!r} is already imported")
            return
        if folder not in sys.path:
            sys.path.insert(0, folder)
        target = module
    try:
        importlib.import_module(target)
    except ImportError as exc:
        raise ValueError(f"plugin {target!r}: cannot import it ({exc})") from None
