"""Time per sweep of the closed-form methods: one update of each, timed alone, for any model through its capabilities.

    rows = sweep_times(model, data, methods=("cavi", "bp", "gibbs", "em"), repeats=20)

Each row: the method, what one step is, the median and the quartiles of the milliseconds per step over ``repeats``
timed steps (after ``warmup`` untimed ones, from a state a few steps in). Timings are the wall clock of this process
(float64, the torch threads as set): quote medians, and ratios measured in the same run.
"""

from __future__ import annotations

import statistics
import time
from typing import Any, Callable

import torch

from models.protocol import CAVI, EM, ExactInference, Gibbs, MessagePassing, require

__all__ = ["sweep_times", "time_steps", "STEPS"]

# method -> (capability, what one step is)
STEPS = {"cavi": (CAVI, "sweep (+ ELBO)"), "bp": (MessagePassing, "iteration"), "gibbs": (Gibbs, "sweep"),
         "em": (EM, "sweep"), "exact": (ExactInference, "marginals + log Z")}


def _stepper(model: Any, data: Any, method: str, generator: torch.Generator, options: dict) -> Callable[[], None]:
    """A function that advances ``method`` by one step (its state kept across calls), a few steps in already."""
    if method == "exact":
        return lambda: model.exact_marginals(data)  # (log Z comes with the marginals)
    if method == "cavi":
        state = [model.cavi_init(data, generator, **options)]

        def step():
            state[0] = model.cavi_update(data, state[0], **options)[0]
    elif method == "bp":
        state = [model.messages_init(data)]

        def step():
            state[0] = model.message_update(data, state[0], **options)[0]
    elif method == "gibbs":
        state = [model.gibbs_init(data, generator)]

        def step():
            state[0] = model.gibbs_sweep(data, state[0], generator)
    else:
        state = [model.em_init(data, generator)]

        def step():
            state[0] = model.em_update(data, state[0])
    for _ in range(3):
        step()
    return step


def sweep_times(model: Any, data: Any, methods: tuple[str, ...] = tuple(STEPS), *, repeats: int = 20,
                warmup: int = 2, seed: int = 0, options: dict[str, dict] | None = None) -> list[dict]:
    """Median milliseconds per step of each method (see the module docstring).

    Args:
        methods: a subset of STEPS; each needs its capability (MissingCapability otherwise).
        options: per method, keywords of its update (e.g. {"bp": {"schedule": "sequential"}}).
    """
    unknown = set(methods) - set(STEPS)
    if unknown:
        raise ValueError(f"unknown method(s) {sorted(unknown)}; choose from {', '.join(STEPS)}")
    if repeats < 1 or warmup < 0:
        raise ValueError(f"repeats must be >= 1 and warmup >= 0, got {repeats} and {warmup}")
    for m in methods:
        require(model, STEPS[m][0], method=f"timing {m}")
    data = model.prepare(data)
    rows = []
    for method in methods:
        step = _stepper(model, data, method, torch.Generator().manual_seed(seed), (options or {}).get(method, {}))
        ms = time_steps(step, repeats, warmup)
        q1, median, q3 = statistics.quantiles(ms, n=4) if repeats > 1 else (ms[0], ms[0], ms[0])
        rows.append({"method": method, "step": STEPS[method][1], "ms": statistics.median(ms), "ms_q1": q1,
                     "ms_q3": q3, "repeats": repeats})
    return rows


def time_steps(step: Callable[[], Any], repeats: int, warmup: int = 1) -> list[float]:
    """Milliseconds of each of ``repeats`` calls of ``step`` (after ``warmup`` untimed ones)."""
    for _ in range(warmup):
        step()
    ms = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        step()
        ms.append(1e3 * (time.perf_counter() - t0))
    return ms
