"""Loopy belief propagation for any model with the MessagePassing capability (models.protocol.MessagePassing).

The model supplies its messages, one update under a schedule (flooding or sequential, with damping), the beliefs and
the Bethe free energy; this module owns the loop (the shared driver), the convergence test on the largest change
of a log message, timing and packaging. The objective is -F (the negative Bethe free energy, which approximates
log Z and is exact on trees), evaluated after every iteration and left out of trace["seconds"].
"""

from __future__ import annotations

import time
from typing import Any, Callable

import torch

from inference.assemble import check_positive_int, check_seed, make_result
from inference.driver import run_loop
from inference.results import InferenceResult
from models.conjugate import sample_categorical
from models.protocol import Invariants, MessagePassing, Model, require

__all__ = ["fit_bp"]


def fit_bp(model: Any, data: Any, *, seed: int = 0, num_iters: int = 100, schedule: str = "flooding",
           damping: float = 0.0, tol: float = 1e-10, num_samples: int = 100, num_chains: int = 1,
           dtype: torch.dtype = torch.float64, device: str = "cpu", progress: bool = True,
           callback: Callable | None = None) -> InferenceResult:
    """Sum-product loopy BP until the largest change of a log message is below ``tol`` (or ``num_iters``).

    Args:
        schedule: one of the model's ``bp_schedules`` ("flooding": every message from the old ones; "sequential":
            sweeps that reuse the messages just updated). damping: in [0, 1).
        num_samples: draws from the product of the beliefs stored in ``posterior`` (for agreement figures).

    Returns:
        InferenceResult: point["marginals"] the beliefs, trace["objective"] -F per iteration, trace["change"] the
        largest message change, attrs "converged", "bethe_free_energy".
    """
    require(model, MessagePassing, Model, Invariants, method="fit_bp")
    check_positive_int("num_iters", num_iters)
    check_positive_int("num_samples", num_samples)
    check_seed(seed)
    if schedule not in model.bp_schedules:
        raise ValueError(f"schedule must be one of {model.bp_schedules}, got {schedule!r}")
    if not 0.0 <= damping < 1.0:
        raise ValueError(f"damping must be in [0, 1), got {damping!r}")
    if num_chains != 1:
        raise ValueError(f"num_chains must be 1 for belief propagation, got {num_chains!r}")
    data = model.prepare(data, dtype=dtype, device=device)
    messages = model.messages_init(data)
    changes: list[float] = [float("nan")]
    eval_seconds = [0.0]

    def step(m):
        m, change = model.message_update(data, m, schedule=schedule, damping=damping)
        changes.append(change)
        t0 = time.perf_counter()
        objective = -float(model.bethe_free_energy(data, m))
        eval_seconds.append(eval_seconds[-1] + time.perf_counter() - t0)
        return m, objective

    def converged(it, m, objective):
        stop = changes[-1] <= tol
        return bool(stop) or (callback(it, m, objective) if callback is not None else False)

    messages, out = run_loop(step, messages, num_iters=num_iters,
                             initial_objective=-float(model.bethe_free_energy(data, messages)), progress=progress,
                             callback=converged, desc=f"loopy BP {model.name}")
    seconds = [t - e for t, e in zip(out.seconds, eval_seconds)]
    beliefs = model.beliefs(data, messages)
    log_b = torch.log(beliefs["marginals"].clamp_min(torch.finfo(beliefs["marginals"].dtype).tiny))
    g = torch.Generator().manual_seed(seed)
    draws = {model.sites[0]: sample_categorical(log_b.expand((num_samples,) + log_b.shape), g)}  # product of beliefs
    draws.update(model.invariants(data, **draws))
    is_converged = len(changes) > 1 and changes[-1] <= tol
    extra = {"num_iters": out.num_iters, "converged": bool(is_converged), "diverged": out.diverged,
             "schedule": schedule, "damping": damping, "tol": tol, "objective_name": "-bethe_free_energy",
             "bethe_free_energy": -out.objective[-1], "final_change": changes[-1]}
    trace = {"objective": torch.tensor(out.objective, dtype=torch.float64),
             "seconds": torch.tensor(seconds, dtype=torch.float64),
             "change": torch.tensor(changes[: len(out.objective)], dtype=torch.float64)}
    return make_result("bp", model, data, posterior={k: v[None] for k, v in draws.items()}, point=beliefs,
                       variational={"log_beliefs": log_b}, trace=trace, seed=seed, wall_time=seconds[-1],
                       extra_attrs=extra)
