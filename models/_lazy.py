"""Lazy package exports (PEP 562): ``from models import PoissonMF`` imports models.poisson_mf.model on first use, so
that ``import models`` (and the command line's --help) stay cheap."""

from __future__ import annotations

import importlib
from typing import Callable


def lazy_exports(package: str, exports: dict[str, str]) -> tuple[Callable[[str], object], Callable[[], list[str]]]:
    """``exports`` maps an attribute name to the module (relative to ``package`` when it starts with a dot) that
    defines it. Returns the module-level ``__getattr__`` and ``__dir__``."""

    def __getattr__(name: str) -> object:
        if name not in exports:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        module = importlib.import_module(exports[name], package)
        return getattr(module, name) if hasattr(module, name) else module

    def __dir__() -> list[str]:
        return sorted(exports)

    return __getattr__, __dir__
