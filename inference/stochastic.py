"""Closed-form stochastic variational inference (Hoffman, Blei, Wang and Paisley 2013) for any model with the
StochasticVI capability (models.protocol.StochasticVI; Poisson MF: models/poisson_mf/stochastic.py).

    run = stochastic_vi(model, blocks, seed=0, batch_size=1000, num_iters=500)   # counts in memory or on disk
    result = fit_stochastic(model, data, seed=0, batch_size=100, num_iters=300)  # in memory, an InferenceResult

Each iteration draws ``batch_size`` rows without replacement (an epoch visits every row once, in a fresh random
order), runs the model's local step on them and moves the global variational parameters by the Robbins-Monro step
rho_t = (tau + t)^-kappa (tau >= 0, kappa in (0.5, 1] for convergence; kappa = 0 is the constant step 1). With every
row in one batch, kappa = 0 and one local iteration, an iteration is a CAVI sweep. The ELBO (every constant included)
is evaluated on all the data every ``eval_every`` iterations and at the end.
"""

from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import torch
from tqdm.auto import tqdm

from inference.assemble import check_positive_int, check_seed, variational_result
from inference.results import InferenceResult
from models.protocol import Invariants, Model, StochasticVI, require

__all__ = ["fit_stochastic", "stochastic_vi", "StochasticRun", "step_size"]


@dataclass
class StochasticRun:
    """The outcome of :func:`stochastic_vi`: the final q, and the ELBO at the evaluated iterations with the wall
    time (evaluations excluded) and the number of rows visited by then."""

    q: Any
    iterations: list[int] = field(default_factory=list)
    elbo: list[float] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)
    rows_seen: list[int] = field(default_factory=list)


def step_size(t: int, tau: float, kappa: float) -> float:
    """Robbins-Monro step rho_t = (tau + t)^-kappa for iteration t = 1, 2, ... (kappa = 0: rho = 1)."""
    return 1.0 if kappa == 0 else math.pow(tau + t, -kappa)


def _check_steps(tau: float, kappa: float) -> None:
    for name, v in (("tau", tau), ("kappa", kappa)):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise ValueError(f"{name} must be a finite number, got {v!r}")
    if tau < 0:
        raise ValueError(f"tau must be >= 0, got {tau}")
    if not 0 <= kappa <= 1:
        raise ValueError(f"kappa must lie in [0, 1] (in (0.5, 1] the steps satisfy Robbins-Monro), got {kappa}")


def stochastic_vi(model: Any, blocks: Any, *, seed: int, batch_size: int, num_iters: int, tau: float = 1.0,
                  kappa: float = 0.7, local_iters: int = 1, eval_every: int | None = None, init: Any = None,
                  progress: bool = True, callback: Callable[[int, Any], bool | None] | None = None) -> StochasticRun:
    """Stochastic VI on row blocks (``models.blocks.RowBlocks``: in memory or memory-mapped).

    Args:
        batch_size: rows per iteration (all rows: every iteration sees the whole data).
        num_iters: iterations (minibatches).
        tau, kappa: step sizes rho_t = (tau + t)^-kappa.
        local_iters: alternations of the local step per batch.
        eval_every: the full-data ELBO every this many iterations (default: once per epoch); also at the start
            and the end. 0: never (for callers that score the fit themselves; ``elbo`` stays empty).
        init: None (the model's CAVI start) or a q to continue from.
        callback: callback(iteration, q) -> stop?
    """
    require(model, StochasticVI, method="stochastic_vi")
    check_seed(seed)
    N = blocks.shape[0]
    batch_size = min(check_positive_int("batch_size", batch_size), N)
    num_iters = check_positive_int("num_iters", num_iters)
    local_iters = check_positive_int("local_iters", local_iters)
    _check_steps(tau, kappa)
    eval_every = check_positive_int("eval_every", eval_every, minimum=0) if eval_every is not None \
        else max(1, N // batch_size)

    generator = torch.Generator().manual_seed(int(seed))
    constants = model.stochastic_constants(blocks)
    q = model.stochastic_start(model.stochastic_init(blocks, generator) if init is None else init, constants)
    rng = np.random.default_rng(int(seed))
    order, pos = rng.permutation(N), 0
    run = StochasticRun(q)

    def evaluate(t: int, spent: float) -> float:
        elbo = model.stochastic_elbo(blocks, q, constants)
        run.iterations.append(t), run.elbo.append(elbo), run.seconds.append(spent)
        run.rows_seen.append(t * batch_size)
        return elbo

    if eval_every:
        evaluate(0, 0.0)
    spent = 0.0
    bar = tqdm(total=num_iters, desc=f"stochastic VI {model.name}", disable=not progress, leave=False, file=sys.stderr)
    try:
        for t in range(1, num_iters + 1):
            start = time.perf_counter()
            if pos + batch_size > N:  # a new epoch: a fresh order
                order, pos = rng.permutation(N), 0
            rows = np.sort(order[pos:pos + batch_size])
            pos += batch_size
            q = model.stochastic_step(blocks, q, rows, step_size(t, tau, kappa), local_iters)
            spent += time.perf_counter() - start
            if eval_every and (t % eval_every == 0 or t == num_iters):
                elbo = evaluate(t, spent)
                bar.set_postfix(elbo=f"{elbo:.6g}")
                if not math.isfinite(elbo):
                    print(f"inferlab: stochastic VI {model.name} diverged at iteration {t} (ELBO {elbo})",
                          file=sys.stderr)
                    break
            bar.update(1)
            if callback is not None and callback(t, q):
                break
    finally:
        bar.close()
    run.q = model.stochastic_finish(q)
    return run


def fit_stochastic(model: Any, data: Any, *, seed: int, num_iters: int = 200, batch_size: int | None = None,
                   tau: float = 1.0, kappa: float = 0.7, local_iters: int = 1, eval_every: int | None = None,
                   num_samples: int = 100, num_chains: int = 1, init: Any = None,
                   dtype: torch.dtype = torch.float64, device: str = "cpu", progress: bool = True,
                   callback: Callable | None = None) -> InferenceResult:
    """Stochastic VI on data in memory, packaged like CAVI's result (draws from q with the invariant quantities,
    PSIS k-hat, trace["objective"] = the ELBO at the evaluated iterations, trace["at_iteration"] which ones).

    batch_size: rows per iteration (default: a tenth of the rows, at least 1). See :func:`stochastic_vi`."""
    from models.blocks import RowBlocks

    require(model, StochasticVI, Model, Invariants, method="fit_stochastic")
    check_positive_int("num_samples", num_samples)
    if eval_every is not None:
        check_positive_int("eval_every", eval_every)  # (0, no ELBO, is stochastic_vi's option only)
    if num_chains != 1:
        raise ValueError(f"num_chains must be 1 for stochastic VI, got {num_chains!r}")
    if device != "cpu":
        raise ValueError(f"fit_stochastic runs on the CPU (its row blocks are NumPy arrays); got device={device!r}")
    data = model.prepare(data, dtype=dtype, device=device)
    blocks = RowBlocks.from_matrix(data)
    batch_size = max(1, data.shape[0] // 10) if batch_size is None else batch_size
    run = stochastic_vi(model, blocks, seed=seed, batch_size=batch_size, num_iters=num_iters, tau=tau, kappa=kappa,
                        local_iters=local_iters, eval_every=eval_every, init=init, progress=progress,
                        callback=callback)
    generator = torch.Generator().manual_seed(int(seed) + 1)
    extra = {"num_iters": run.iterations[-1], "batch_size": min(batch_size, data.shape[0]), "tau": tau,
             "kappa": kappa, "local_iters": local_iters, "objective_name": "elbo", "diverged": False,
             "converged": False}
    trace = {"objective": torch.tensor(run.elbo, dtype=torch.float64),
             "seconds": torch.tensor(run.seconds, dtype=torch.float64),
             "at_iteration": torch.tensor(run.iterations, dtype=torch.float64)}
    return variational_result("stochastic", model, data, run.q, generator, num_samples=num_samples,
                              objective=run.elbo[-1], trace=trace, seed=seed, wall_time=run.seconds[-1], extra=extra)
