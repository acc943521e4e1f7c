"""Coordinate-ascent variational inference (CAVI) for any model with the CAVI capability (models.protocol.CAVI).

The model supplies its variational family, ``cavi_init``, ``cavi_update`` (one sweep, returning the ELBO),
``cavi_initial_elbo`` and ``invariants``; this module owns nothing model-specific: the loop, timing and packaging.
Model-specific options (e.g. Poisson MF's ``init="reference"``, ``elbo_at="after_eta"``) are keywords of fit_cavi,
checked against the model's ``cavi_options``.
"""

from __future__ import annotations

import time
from typing import Any, Callable

import torch

from inference.assemble import check_draws_memory, check_positive_int, variational_result
from inference.driver import resolve_seed, run_loop
from inference.results import InferenceResult
from models.protocol import CAVI, Invariants, Model, require

__all__ = ["fit_cavi", "cavi_options"]


def cavi_options(model: Any, init: Any, options: dict[str, Any]) -> dict[str, Any]:
    """The model's CAVI options with their defaults, ``init`` included when it names a start (a string); raises
    ValueError naming an unknown option or value."""
    allowed = model.cavi_options
    given = dict(options)
    if isinstance(init, str) and not (init == "default" and "init" not in allowed):
        given["init"] = init
    out = {}
    for key, value in given.items():
        if key not in allowed:
            known = ", ".join(allowed) or "none"
            raise ValueError(f"fit_cavi: {model.name} has no CAVI option {key!r} (its options: {known})")
        if value not in allowed[key]:
            raise ValueError(f"fit_cavi: {key} must be one of {allowed[key]}, got {value!r}")
        out[key] = value
    return {**{k: v[0] for k, v in allowed.items()}, **out}


def fit_cavi(model: Any, data: Any, *, seed: int | torch.Generator, num_iters: int = 100, num_chains: int = 1,
             init: Any = None, tol: float | None = None, num_samples: int = 100,
             monitor: Callable[[Any], dict[str, float]] | None = None, dtype: torch.dtype = torch.float64,
             device: str = "cpu", progress: bool = True, callback: Callable | None = None,
             **options: Any) -> InferenceResult:
    """Fit by CAVI; the ELBO (every constant included) is evaluated at the start and after every sweep.

    Args:
        model: any model with the CAVI capability (e.g. PoissonMF).
        data: anything ``model.prepare`` accepts.
        seed: int or torch.Generator; drives the initialisation and the draws from q.
        num_iters: maximum number of sweeps.
        num_chains: must be 1 (CAVI is deterministic given its initialisation).
        init: None (the model's default start), the name of one of the model's starts (its "init" option, e.g.
            "reference" for Poisson MF), or a state from a previous run.
        tol: stop when the relative ELBO change is <= tol.
        num_samples: number of draws from q stored in ``posterior``.
        monitor: monitor(q) -> {name: value}, evaluated at the start and after every sweep (e.g. a test NLL); each
            name becomes a trace entry, and its time is left out of trace["seconds"].
        dtype, device: float64 by default; float32 and CUDA devices are opt-in.
        progress: tqdm progress bar. callback: callback(iteration, state, elbo) -> stop?
        **options: the model's CAVI options (``model.cavi_options``), e.g. elbo_at="after_eta" for Poisson MF.

    Returns:
        InferenceResult with trace["objective"] = ELBO per sweep (entry 0 at the initialisation).
    """
    require(model, CAVI, Model, Invariants, method="fit_cavi")
    check_positive_int("num_iters", num_iters)
    check_positive_int("num_samples", num_samples)
    if num_chains != 1:
        raise ValueError(f"num_chains must be 1 for CAVI (a deterministic method), got {num_chains!r}")
    given_state = init is not None and not isinstance(init, str)
    opts = cavi_options(model, init, options)
    data = model.prepare(data, dtype=dtype, device=device)
    generator = resolve_seed(seed)
    if given_state:
        state = init
        elbo0 = float(model.cavi_initial_elbo(data, state, **{k: v for k, v in opts.items() if k != "init"}))
    else:
        state = model.cavi_init(data, generator, **opts)
        elbo0 = float(model.cavi_initial_elbo(data, state, **opts))
    check_draws_memory(state.params, num_samples)  # before the sweeps, so that no fit is lost to the draws
    monitored: dict[str, list[float]] = {}
    eval_seconds = [0.0]

    def evaluate(st) -> None:
        t0 = time.perf_counter()
        with torch.no_grad():
            for k, v in (monitor(st.params) if monitor is not None else {}).items():
                monitored.setdefault(k, []).append(float(v))
        eval_seconds.append(eval_seconds[-1] + time.perf_counter() - t0)

    def step(s):
        s, elbo = model.cavi_update(data, s, **opts)
        evaluate(s)
        return s, elbo

    evaluate(state)
    del eval_seconds[1:]  # the initial evaluation happens before the clock starts
    state, out = run_loop(step, state, num_iters=num_iters, initial_objective=elbo0, tol=tol, monotone=True,
                          progress=progress, callback=callback, desc=f"CAVI {model.name}")
    seconds = [t - e for t, e in zip(out.seconds, eval_seconds)]
    extra = {"num_iters": out.num_iters, "converged": out.converged, "diverged": out.diverged,
             "monotone_violations": out.decreases, "largest_relative_decrease": out.largest_decrease,
             "init": "given" if given_state else opts.get("init", "default"), "objective_name": "elbo"}
    extra.update({k: v for k, v in opts.items() if k != "init"})
    trace = {"objective": torch.tensor(out.objective, dtype=torch.float64),
             "seconds": torch.tensor(seconds, dtype=torch.float64)}
    trace.update({k: torch.tensor(v[: len(out.objective)], dtype=torch.float64) for k, v in monitored.items()})
    return variational_result("cavi", model, data, state.params, generator, num_samples=num_samples,
                              objective=out.objective[-1], trace=trace, seed=seed, wall_time=seconds[-1], extra=extra)
