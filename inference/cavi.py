"""Coordinate-ascent variational inference (CAVI) for any model that exposes closed-form updates.

The model supplies ``cavi_init(data, generator, init)``, ``cavi_update(data, state, **kw) -> (state, elbo)``,
``elbo(data, params)``, ``sample_q(params, S, generator)``, ``posterior_mean(params)`` and ``invariants``;
this module owns nothing model-specific: the loop, timing and packaging.
"""

from __future__ import annotations

from typing import Any, Callable

import time

import torch

from inference._common import check_positive_int, make_result, vi_khat
from inference.driver import resolve_seed, run_loop
from inference.results import InferenceResult

__all__ = ["fit_cavi"]


def fit_cavi(model: Any, data: Any, *, seed: int | torch.Generator, num_iters: int = 100, num_chains: int = 1,
             init: Any = "default", tol: float | None = None, elbo_at: str = "after_z", num_samples: int = 100,
             monitor: Callable[[Any], dict[str, float]] | None = None, dtype: torch.dtype = torch.float64,
             device: str = "cpu", progress: bool = True, callback: Callable | None = None) -> InferenceResult:
    """Fit by CAVI; the ELBO (every constant included) is evaluated at the start and after every sweep.

    Args:
        model: e.g. PoissonMF.
        data: anything ``model.prepare`` accepts.
        seed: int or torch.Generator; drives the initialisation and the draws from q.
        num_iters: maximum number of sweeps.
        num_chains: must be 1 (CAVI is deterministic given its initialisation).
        init: "default", "reference" (the course's initialisation) or a state from a previous run.
        tol: stop when the relative ELBO change is <= tol.
        elbo_at: where in the sweep the ELBO is evaluated ("after_z" or the course's "after_eta").
        num_samples: number of draws from q stored in ``posterior``.
        dtype, device: float64 by default; float32 and CUDA devices are opt-in.
        monitor: monitor(q's parameters) -> {name: value}, evaluated at the start and after every sweep (e.g. a
            test NLL); each name becomes a trace entry, and its time is left out of trace["seconds"].
        progress: tqdm progress bar. callback: callback(iteration, state, elbo) -> stop?

    Returns:
        InferenceResult with trace["objective"] = ELBO per sweep (entry 0 at the initialisation).
    """
    check_positive_int("num_iters", num_iters, minimum=0)
    check_positive_int("num_samples", num_samples)
    if num_chains != 1:
        raise ValueError(f"num_chains must be 1 for CAVI (a deterministic method), got {num_chains!r}")
    data = model.prepare(data, dtype=dtype, device=device)
    generator = resolve_seed(seed)
    state = model.cavi_init(data, generator, init) if isinstance(init, str) else init
    elbo0 = float(model.cavi_initial_elbo(data, state, init if isinstance(init, str) else "given"))
    monitored: dict[str, list[float]] = {}
    eval_seconds = [0.0]

    def evaluate(st) -> None:
        t0 = time.perf_counter()
        with torch.no_grad():
            for k, v in (monitor(st.params) if monitor is not None else {}).items():
                monitored.setdefault(k, []).append(float(v))
        eval_seconds.append(eval_seconds[-1] + time.perf_counter() - t0)

    def step(s):
        s, elbo = model.cavi_update(data, s, elbo_at=elbo_at)
        evaluate(s)
        return s, elbo

    evaluate(state)
    del eval_seconds[1:]  # the initial evaluation happens before the clock starts
    state, out = run_loop(step, state, num_iters=num_iters, initial_objective=elbo0, tol=tol, monotone=True,
                          progress=progress, callback=callback, desc=f"CAVI {model.name}")
    seconds = [t - e for t, e in zip(out.seconds, eval_seconds)]
    params = state.params
    draws = model.sample_q(params, num_samples, generator)
    draws.update(model.invariants(data, **draws))
    khat = vi_khat(model, params, draws)
    mean = model.posterior_mean(params)
    mean.update({k: v.mean(0) for k, v in draws.items() if k not in mean})
    extra = {"num_iters": out.num_iters, "converged": out.converged, "diverged": out.diverged,
             "monotone_violations": out.decreases, "largest_relative_decrease": out.largest_decrease,
             "init": init if isinstance(init, str) else "given", "elbo_at": elbo_at, "objective_name": "elbo"}
    extra.update(khat)
    extra.update(model.objective_attrs(data, out.objective[-1]))
    trace = {"objective": torch.tensor(out.objective, dtype=torch.float64),
             "seconds": torch.tensor(seconds, dtype=torch.float64)}
    trace.update({k: torch.tensor(v[: len(out.objective)], dtype=torch.float64) for k, v in monitored.items()})
    return make_result("cavi", model, data, posterior={k: v[None] for k, v in draws.items()}, point=mean,
                       variational=params.present() if hasattr(params, "present") else params._asdict(),
                       trace=trace, seed=seed, wall_time=seconds[-1], extra_attrs=extra)
