"""Posterior mode (MAP) by EM for any model with the EM capability (models.protocol.EM).

The model supplies ``em_init(data, generator) -> state`` (a NamedTuple of its sites), ``em_update(data, state) ->
state`` (one EM sweep: an E-step over the model's latent allocations, where it has them, and the mode of each block's
complete conditional; every block update maximises the expected complete log posterior, so the log joint
``log_joint(data, *state)`` with the allocations summed out never decreases) and ``invariants``. This module owns
nothing model-specific: the loop, restarts, timing and packaging.

A posterior mode depends on the parameterisation (it is the mode of the density of the model's sites as written:
rates, precisions, weights on the simplex); it is a point estimate, reported without posterior spread.
"""

from __future__ import annotations

from typing import Any, Callable

import torch

from inference.assemble import chain_seeds, check_positive_int, check_seed, make_result
from inference.driver import run_loop
from inference.results import InferenceResult
from models.protocol import EM, Invariants, LogJoint, Model, require

__all__ = ["fit_em"]


def fit_em(model: Any, data: Any, *, seed: int, num_iters: int = 500, tol: float | None = 1e-10,
           num_restarts: int = 1, init: Any = None, dtype: torch.dtype = torch.float64, device: str = "cpu",
           progress: bool = True, callback: Callable | None = None) -> InferenceResult:
    """Find a posterior mode by EM from ``num_restarts`` starts and keep the one with the highest log joint.

    Args:
        model: any model with the EM capability (PoissonMF, BayesGMM, BayesGMMFull, GaussianMF).
        seed: int; restart r uses an independent seed spawned from it.
        num_iters: maximum EM sweeps per start.
        tol: stop a start once the relative change of the log joint is <= tol (None: run every sweep).
        num_restarts: independent starts; the best final log joint is kept (all are listed in attrs).
        init: None, or a state to start from (then num_restarts must be 1).
        callback: callback(iteration, state, log_joint) -> stop?

    Returns:
        InferenceResult with the mode as a single draw (chain 1, draw 1) of every site and invariant quantity,
        trace["objective"] = log joint per sweep of the kept start (entry 0 at its initialisation), and attrs
        "point_estimate" True, "restart_objectives", "converged", "monotone_violations".
    """
    require(model, EM, Model, LogJoint, Invariants, method="fit_em")
    check_positive_int("num_iters", num_iters)
    check_positive_int("num_restarts", num_restarts)
    check_seed(seed)
    if init is not None and num_restarts != 1:
        raise ValueError(f"init is one starting state, so num_restarts must be 1, got {num_restarts}")
    data = model.prepare(data, dtype=dtype, device=device)
    runs = []
    for r, restart_seed in enumerate(chain_seeds(seed, num_restarts)):
        state = init if init is not None else model.em_init(data, torch.Generator().manual_seed(restart_seed))

        def step(s):
            s = model.em_update(data, s)
            return s, model.log_joint(data, *s)

        desc = f"EM {model.name}" + (f" start {r}" if num_restarts > 1 else "")
        state, out = run_loop(step, state, num_iters=num_iters, initial_objective=float(model.log_joint(data, *state)),
                              tol=tol, monotone=True, progress=progress, callback=callback, desc=desc)
        runs.append((state, out))
    best = max(range(len(runs)), key=lambda i: runs[i][1].objective[-1])
    state, out = runs[best]
    posterior = {k: v[None, None] for k, v in state._asdict().items()}
    posterior.update(model.invariants(data, **posterior))
    extra = {"num_iters": out.num_iters, "converged": out.converged, "diverged": out.diverged,
             "monotone_violations": out.decreases, "largest_relative_decrease": out.largest_decrease,
             "num_restarts": num_restarts, "best_restart": best,
             "restart_objectives": [float(o.objective[-1]) for _, o in runs],
             "objective_name": "log_joint", "point_estimate": True}
    return make_result("em", model, data, posterior=posterior, point=dict(state._asdict()), variational=None,
                       trace={"objective": torch.tensor(out.objective, dtype=torch.float64),
                              "seconds": torch.tensor(out.seconds, dtype=torch.float64)},
                       seed=seed, wall_time=sum(o.seconds[-1] for _, o in runs), extra_attrs=extra)
