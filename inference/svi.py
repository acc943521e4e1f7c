"""Stochastic variational inference with Pyro for any model/guide pair.

The model object supplies ``model``, ``guide(data, params)``, ``guide_init(data, generator)`` and
``guide_constraints``; ``elbo_from_guide(data, params)`` when a closed-form ELBO exists (so SVI's final
q can be scored exactly like CAVI's). Randomness and the Pyro param store are scoped to the run.
"""

from __future__ import annotations

import inspect
import math
import time
from typing import Any, Callable

import pyro
import pyro.optim
import torch
from pyro.infer import SVI, Trace_ELBO, TraceEnum_ELBO, TraceMeanField_ELBO

from inference._common import check_positive_int, make_result, vi_khat
from inference.driver import run_loop
from inference.results import InferenceResult

__all__ = ["fit_svi"]


def fit_svi(model: Any, data: Any, *, seed: int, num_iters: int = 1000, lr: float = 0.05, num_particles: int = 1,
            elbo: str = "auto", num_samples: int = 100, eval_every: int = 10, num_chains: int = 1, init: Any = None,
            subsample_size: int | None = None, monitor: Callable[[dict], dict[str, float]] | None = None,
            dtype: torch.dtype = torch.float64, device: str = "cpu", progress: bool = True,
            callback: Callable | None = None) -> InferenceResult:
    """Fit the model's guide by SVI (Adam).

    Args:
        elbo: "auto" (the model's ``svi_elbo``, else "meanfield"), "meanfield" (TraceMeanField_ELBO: analytic
            KL between guide and prior, which mean-field guides allow), "trace" (Trace_ELBO) or "enum"
            (TraceEnum_ELBO: discrete sites marked for enumeration are summed out exactly).
        lr: Adam learning rate. num_particles: particles per gradient estimate.
        init: None (the model's ``guide_init`` from the seed) or a dict of initial guide parameters.
        eval_every: when the model has a closed-form ELBO, it is evaluated every this many steps and
            stored in trace["elbo"] (NaN at other steps); so is ``monitor``.
        subsample_size: minibatch size of the model's data plate (the model's ``model`` must take a
            ``subsample_size`` argument); one epoch is ceil(n / subsample_size) steps.
        monitor: monitor(guide params) -> {name: value}, evaluated at the start and every ``eval_every`` steps
            (e.g. a test NLL); each name becomes a trace entry (NaN between evaluations).

    Returns:
        InferenceResult; trace["objective"] holds -loss (a noisy ELBO estimate) per step, trace["seconds"]
        the cumulative optimisation time (the time spent in the closed-form ELBO and monitor excluded), and
        attrs["elbo"] the closed-form ELBO at the final q when the model provides one.
    """
    check_positive_int("num_iters", num_iters, minimum=0)
    check_positive_int("num_particles", num_particles)
    check_positive_int("eval_every", eval_every)
    if num_chains != 1:
        raise ValueError(f"num_chains must be 1 for SVI, got {num_chains!r}")
    if elbo == "auto":
        elbo = getattr(model, "svi_elbo", "meanfield")
    if elbo not in ("meanfield", "trace", "enum"):
        raise ValueError(f"elbo must be 'auto', 'meanfield', 'trace' or 'enum', got {elbo!r}")
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    model_kwargs = {}
    if subsample_size is not None:
        check_positive_int("subsample_size", subsample_size)
        if "subsample_size" not in inspect.signature(model.model).parameters:
            raise ValueError(f"subsample_size: the {getattr(model, 'name', model)} model has no subsampled data plate")
        model_kwargs["subsample_size"] = int(subsample_size)
    data = model.prepare(data, dtype=dtype, device=device)
    generator = torch.Generator().manual_seed(seed)
    init = model.guide_init(data, generator) if init is None else init
    names = list(init)
    loss_cls = {"meanfield": TraceMeanField_ELBO, "trace": Trace_ELBO, "enum": TraceEnum_ELBO}[elbo]
    loss_kw = {"max_plate_nesting": model.max_plate_nesting} if elbo == "enum" else {}
    with torch.random.fork_rng(devices=[]), pyro.get_param_store().scope():
        torch.manual_seed(seed)

        def guide(d, **_):
            params = {k: pyro.param(k, init[k].clone(), constraint=model.guide_constraints[k]) for k in names}
            return model.guide(d, params)

        svi = SVI(model.model, guide, pyro.optim.Adam({"lr": lr}), loss=loss_cls(num_particles=num_particles, **loss_kw))
        loss0 = svi.evaluate_loss(data, **model_kwargs)
        closed_form = hasattr(model, "elbo_from_guide")
        monitored: dict[str, list[float]] = {}

        def evaluate() -> None:  # the closed-form ELBO (comparable with CAVI's) and the monitor
            with torch.no_grad():
                current = {k: pyro.param(k).detach() for k in names}
                values = {"elbo": float(model.elbo_from_guide(data, current))} if closed_form else {}
                values.update(monitor(current) if monitor is not None else {})
            for k, v in values.items():
                monitored.setdefault(k, []).append(v)

        def skip() -> None:
            for v in monitored.values():
                v.append(math.nan)

        eval_seconds = [0.0]  # cumulative time spent scoring, taken out of the reported wall time

        def step(_):
            loss = svi.step(data, **model_kwargs)
            t0 = time.perf_counter()
            evaluate() if len(next(iter(monitored.values()), [])) % eval_every == 0 else skip()
            eval_seconds.append(eval_seconds[-1] + time.perf_counter() - t0)
            return None, -loss

        guide(data)  # create the params so that the initial state can be scored
        evaluate()
        start = time.perf_counter()
        _, out = run_loop(step, None, num_iters=num_iters, initial_objective=-loss0, progress=progress,
                          callback=callback, desc=f"SVI {model.name}")
        wall = time.perf_counter() - start - eval_seconds[-1]
        params = {k: pyro.param(k).detach().clone() for k in names}
    draws = model.sample_q_guide(params, num_samples, generator)
    draws.update(model.invariants(data, **draws))
    khat = vi_khat(model, params, draws)
    mean = model.guide_mean(params)
    mean.update({k: v.mean(0) for k, v in draws.items() if k not in mean})
    extra = {"num_iters": out.num_iters, "diverged": out.diverged, "lr": lr, "elbo_estimator": loss_cls.__name__,
             "num_particles": num_particles, "objective_name": "elbo (Monte Carlo estimate)"}
    extra.update(khat)
    if hasattr(model, "elbo_from_guide"):
        closed = float(model.elbo_from_guide(data, params))
        extra["elbo"] = closed
        extra.update(model.objective_attrs(data, closed))
    seconds = [t - e for t, e in zip(out.seconds, eval_seconds)]  # optimisation time only
    trace = {"objective": torch.tensor(out.objective, dtype=torch.float64),
             "seconds": torch.tensor(seconds, dtype=torch.float64)}
    for k, v in monitored.items():
        trace[k] = torch.tensor(v[: len(out.objective)], dtype=torch.float64)
    if closed_form:
        trace["elbo"][len(out.objective) - 1] = extra["elbo"]  # the final state is always scored
    return make_result("svi", model, data, posterior={k: v[None] for k, v in draws.items()}, point=mean,
                       variational=params, trace=trace,
                       seed=seed, wall_time=wall, extra_attrs=extra)
