"""Helpers shared by the method modules: attributes every result carries, and result assembly."""

from __future__ import annotations

import platform
from typing import Any

import numpy as np
import torch

from inference.results import InferenceResult


def versions() -> dict[str, str]:
    import pyro

    return {"python": platform.python_version(), "torch": torch.__version__, "pyro": pyro.__version__,
            "numpy": np.__version__}


def seed_value(seed: int | torch.Generator) -> int | str:
    return seed if isinstance(seed, int) else "generator"


def chain_seeds(seed: int, num_chains: int) -> list[int]:
    """Independent per-chain seeds derived from one seed (numpy SeedSequence spawning)."""
    return [int(s.generate_state(1)[0]) for s in np.random.SeedSequence(seed).spawn(num_chains)]


def check_positive_int(name: str, value: Any, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def make_result(method: str, model: Any, data: Any, *, posterior: dict, point: dict, variational: dict | None,
                trace: dict, sample_stats: dict | None = None, seed: Any, wall_time: float,
                extra_attrs: dict | None = None) -> InferenceResult:
    """Assemble an InferenceResult with the attributes every method records."""
    attrs = {"method": method, "model": getattr(model, "name", type(model).__name__), "seed": seed_value(seed),
             "dtype": str(data.dtype).replace("torch.", ""), "device": str(data.device), "wall_time": wall_time,
             "data": repr(data), "versions": versions()}
    attrs.update(extra_attrs or {})
    dims = dict(model.dims)
    dims.update(getattr(model, "invariant_dims", {}))
    coords = model.coords(data) if hasattr(model, "coords") else {}
    return InferenceResult(method, model, posterior, point, variational, trace, sample_stats or {}, attrs, dims,
                           coords, data)
