"""Exact inference for discrete models small or narrow enough (models.protocol.ExactInference): the marginals,
log Z, and exact independent draws, packaged like every other method's result.

The model supplies ``exact_marginals``, ``log_partition`` and ``exact_sample`` (for grid MRFs, a row-by-row transfer
matrix); this module owns nothing model-specific.
"""

from __future__ import annotations

import time
from typing import Any, Callable

import torch

from inference.assemble import check_positive_int, check_seed, make_result
from inference.results import InferenceResult
from models.protocol import ExactInference, Invariants, Model, require

__all__ = ["fit_exact"]


def fit_exact(model: Any, data: Any, *, seed: int = 0, num_samples: int = 1000, pairwise: bool = False,
              dtype: torch.dtype = torch.float64, device: str = "cpu", progress: bool = True,
              callback: Callable | None = None, num_chains: int = 1) -> InferenceResult:
    """The exact posterior: marginals (point["marginals"]; with ``pairwise`` the pairwise marginals too), log Z
    (attrs["log_partition"], trace["objective"]) and ``num_samples`` exact independent draws (posterior, one chain),
    so that agreement with other methods is measured with known Monte Carlo error.

    A model too large for exact inference raises ValueError saying what it would need."""
    require(model, ExactInference, Model, Invariants, method="fit_exact")
    check_positive_int("num_samples", num_samples)
    check_seed(seed)
    if num_chains != 1:
        raise ValueError(f"num_chains must be 1 for exact inference (the draws are independent), got {num_chains!r}")
    data = model.prepare(data, dtype=dtype, device=device)
    start = time.perf_counter()
    marginals = model.exact_marginals(data, pairwise=pairwise)
    log_Z = float(marginals.pop("log_Z") if "log_Z" in marginals else model.log_partition(data))
    seconds = time.perf_counter() - start
    draws = model.exact_sample(data, num_samples, torch.Generator().manual_seed(seed))
    posterior = {model.sites[0]: draws[None]}
    posterior.update(model.invariants(data, **posterior))
    extra = {"log_partition": log_Z, "objective_name": "log_partition", "num_iters": 0, "converged": True,
             "diverged": False, "independent_draws": True}
    return make_result("exact", model, data, posterior=posterior, point=marginals, variational=None,
                       trace={"objective": torch.tensor([log_Z], dtype=torch.float64),
                              "seconds": torch.tensor([seconds], dtype=torch.float64)},
                       seed=seed, wall_time=seconds, extra_attrs=extra)
