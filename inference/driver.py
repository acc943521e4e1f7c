"""The one iteration driver shared by every closed-form method (CAVI, EM, Gibbs).

A method supplies ``step(state) -> (state, objective)``; the driver owns the loop, the per-iteration
trace (objective and cumulative wall time), the tolerance test, the tqdm progress bar, the optional
callback, and the detection of divergence (a non-finite objective) and of objective decreases.
"""

from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from tqdm.auto import tqdm

__all__ = ["LoopOutcome", "run_loop", "resolve_seed"]

import torch


def resolve_seed(seed: int | torch.Generator | None, device: str | torch.device = "cpu") -> torch.Generator:
    """An explicit torch.Generator from an int seed (or the given generator). ``None`` is refused:
    every method takes its randomness explicitly."""
    if isinstance(seed, torch.Generator):
        return seed
    import numpy as np

    if seed is None or isinstance(seed, (bool, np.bool_)) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative int or a torch.Generator, got {seed!r}")
    return torch.Generator(device="cpu").manual_seed(int(seed))


@dataclass
class LoopOutcome:
    """What the driver returns besides the final state."""

    objective: list[float] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)
    iterations: list[int] = field(default_factory=list)  # the iteration of each objective entry (0: the start)
    converged: bool = False
    diverged: bool = False
    stopped_by_callback: bool = False
    decreases: int = 0
    largest_decrease: float = 0.0
    completed: int = 0

    @property
    def num_iters(self) -> int:
        """Iterations completed (whether or not their objective was evaluated)."""
        return self.completed


def run_loop(step: Callable[[Any], tuple[Any, Any]], state: Any, *, num_iters: int, initial_objective: float,
             tol: float | None = None, monotone: bool = False, progress: bool = True,
             callback: Callable[[int, Any, float], bool | None] | None = None,
             desc: str = "iterating") -> tuple[Any, LoopOutcome]:
    """Run ``step`` up to ``num_iters`` times.

    Args:
        step: state -> (state, objective); the objective may be a 0-d tensor, or None where the step did not
            evaluate it (a thinned sampler evaluates its log joint at the kept sweeps only): such an iteration is
            not in the trace and is not tested for divergence or convergence.
        initial_objective: objective at the initial state (trace entry 0, at 0 seconds).
        tol: stop once |objective change| <= tol * |objective| (None: run all iterations).
        monotone: the method guarantees a non-decreasing objective (CAVI, EM); a decrease larger than
            1e-9 relative is counted, and reported once on stderr.
        callback: called as callback(iteration, state, objective) after every step; returning True stops.

    Returns:
        (final state, LoopOutcome). A non-finite objective stops the loop, sets ``diverged`` and says so
        on stderr; the state returned is the last one with a finite objective (the last evaluated one).
    """
    if isinstance(num_iters, bool) or not isinstance(num_iters, int) or num_iters < 0:
        raise ValueError(f"num_iters must be a non-negative int, got {num_iters!r}")
    if tol is not None and (isinstance(tol, bool) or not math.isfinite(tol) or tol < 0):
        raise ValueError(f"tol must be a finite number >= 0 (or None), got {tol!r}")
    out = LoopOutcome(objective=[float(initial_objective)], seconds=[0.0], iterations=[0])
    start = time.perf_counter()
    good = state  # the last state whose objective was evaluated and finite
    bar = tqdm(total=num_iters, desc=desc, disable=not progress, leave=False, file=sys.stderr)
    try:
        for it in range(1, num_iters + 1):
            new_state, obj = step(state)
            if obj is None:  # not evaluated at this iteration
                state = new_state
                out.completed = it
                bar.update(1)
                if callback is not None and callback(it, state, None):
                    out.stopped_by_callback = True
                    break
                continue
            obj = float(obj)
            elapsed = time.perf_counter() - start
            if not math.isfinite(obj):
                out.diverged = True
                print(f"inferlab: {desc} diverged at iteration {it} (objective {obj})", file=sys.stderr)
                state = good
                break
            state = good = new_state
            out.completed = it
            prev = out.objective[-1]
            out.objective.append(obj)
            out.seconds.append(elapsed)
            out.iterations.append(it)
            if monotone and obj < prev - 1e-9 * abs(prev):
                if out.decreases == 0:
                    print(f"inferlab: {desc}: objective decreased at iteration {it} "
                          f"({prev:.12g} -> {obj:.12g})", file=sys.stderr)
                out.decreases += 1
                out.largest_decrease = max(out.largest_decrease, (prev - obj) / abs(prev))
            bar.update(1)
            if progress and (it % 10 == 0 or it == num_iters):
                bar.set_postfix(objective=f"{obj:.6g}")
            if callback is not None and callback(it, state, obj):
                out.stopped_by_callback = True
                break
            if tol is not None and abs(obj - prev) <= tol * abs(obj):
                out.converged = True
                break
    finally:
        bar.close()
    return state, out
