"""Stochastic variational inference with Pyro for any model with the SVI capability (models.protocol.SVI).

The model supplies ``model``, ``guide(data, params)``, ``guide_init(data, generator)``, ``guide_constraints``, its
variational family (``family.from_guide`` turns the guide's parameters into the same q CAVI optimises) and the
closed-form ``elbo(data, q)``, so that SVI's q is scored exactly like CAVI's. Randomness and the Pyro param store
are scoped to the run.
"""

from __future__ import annotations

import inspect
import math
import time
from typing import Any, Callable

import pyro
import pyro.optim
import torch
from pyro.infer import SVI as PyroSVI
from pyro.infer import Trace_ELBO, TraceEnum_ELBO, TraceMeanField_ELBO

from inference.assemble import check_positive_int, check_seed, variational_result
from inference.driver import run_loop
from inference.results import InferenceResult
from models.protocol import SVI, Invariants, Model, PyroModel, require

__all__ = ["fit_svi"]


def fit_svi(model: Any, data: Any, *, seed: int, num_iters: int = 1000, lr: float = 0.05, num_particles: int = 1,
            elbo: str = "auto", num_samples: int = 100, eval_every: int = 10, num_chains: int = 1, init: Any = None,
            subsample_size: int | None = None, monitor: Callable[[Any], dict[str, float]] | None = None,
            dtype: torch.dtype = torch.float64, device: str = "cpu", progress: bool = True,
            callback: Callable | None = None) -> InferenceResult:
    """Fit the model's guide by SVI (Adam).

    Args:
        elbo: "auto" (the model's ``svi_elbo``), "meanfield" (TraceMeanField_ELBO: analytic KL between guide and
            prior, which mean-field guides allow), "trace" (Trace_ELBO) or "enum" (TraceEnum_ELBO: discrete sites
            marked for enumeration are summed out exactly).
        lr: Adam learning rate. num_particles: particles per gradient estimate.
        init: None (the model's ``guide_init`` from the seed) or a dict of initial guide parameters.
        eval_every: the closed-form ELBO is evaluated every this many steps and stored in trace["elbo"] (NaN at
            other steps); so is ``monitor``.
        subsample_size: minibatch size of the model's data plate (the model's ``model`` must take a
            ``subsample_size`` argument); one epoch is ceil(n / subsample_size) steps.
        monitor: monitor(q) -> {name: value} with q the model's variational family, evaluated at the start and every
            ``eval_every`` steps (e.g. a test NLL); each name becomes a trace entry (NaN between evaluations).

    Returns:
        InferenceResult; trace["objective"] holds -loss (a noisy ELBO estimate) per step, trace["seconds"]
        the cumulative optimisation time (the time spent in the closed-form ELBO and monitor excluded), and
        attrs["elbo"] the closed-form ELBO at the final q.
    """
    require(model, SVI, PyroModel, Model, Invariants, method="fit_svi")
    check_positive_int("num_iters", num_iters)
    check_positive_int("num_particles", num_particles)
    check_positive_int("eval_every", eval_every)
    if num_chains != 1:
        raise ValueError(f"num_chains must be 1 for SVI, got {num_chains!r}")
    if elbo == "auto":
        elbo = model.svi_elbo
    if elbo not in ("meanfield", "trace", "enum"):
        raise ValueError(f"elbo must be 'auto', 'meanfield', 'trace' or 'enum', got {elbo!r}")
    check_seed(seed)
    model_kwargs = {}
    if subsample_size is not None:
        check_positive_int("subsample_size", subsample_size)
        if "subsample_size" not in inspect.signature(model.model).parameters:
            raise ValueError(f"subsample_size: the {model.name} model has no subsampled data plate")
        model_kwargs["subsample_size"] = int(subsample_size)
    data = model.prepare(data, dtype=dtype, device=device)
    generator = torch.Generator().manual_seed(seed)
    init = model.guide_init(data, generator) if init is None else init
    names = list(init)
    family = model.family
    loss_cls = {"meanfield": TraceMeanField_ELBO, "trace": Trace_ELBO, "enum": TraceEnum_ELBO}[elbo]
    loss_kw = {"max_plate_nesting": model.max_plate_nesting} if elbo == "enum" else {}  # None lets Pyro find it
    with torch.random.fork_rng(devices=[]), pyro.get_param_store().scope():
        torch.manual_seed(seed)

        def guide(d, **_):
            params = {k: pyro.param(k, init[k].clone(), constraint=model.guide_constraints[k]) for k in names}
            return model.guide(d, params)

        svi = PyroSVI(model.model, guide, pyro.optim.Adam({"lr": lr}),
                      loss=loss_cls(num_particles=num_particles, **loss_kw))
        loss0 = svi.evaluate_loss(data, **model_kwargs)
        monitored: dict[str, list[float]] = {}

        def evaluate() -> None:  # the closed-form ELBO (comparable with CAVI's) and the monitor
            with torch.no_grad():
                q = family.from_guide({k: pyro.param(k).detach() for k in names})
                values = {"elbo": float(model.elbo(data, q))}
                values.update(monitor(q) if monitor is not None else {})
            for k, v in values.items():
                monitored.setdefault(k, []).append(v)

        def skip() -> None:
            for v in monitored.values():
                v.append(math.nan)

        eval_seconds = [0.0]  # cumulative time spent scoring, taken out of the reported wall time

        def step(_):
            loss = svi.step(data, **model_kwargs)
            t0 = time.perf_counter()
            evaluate() if len(monitored["elbo"]) % eval_every == 0 else skip()
            eval_seconds.append(eval_seconds[-1] + time.perf_counter() - t0)
            return None, -loss

        guide(data)  # create the params so that the initial state can be scored
        evaluate()
        start = time.perf_counter()
        _, out = run_loop(step, None, num_iters=num_iters, initial_objective=-loss0, progress=progress,
                          callback=callback, desc=f"SVI {model.name}")
        wall = time.perf_counter() - start - eval_seconds[-1]
        params = {k: pyro.param(k).detach().clone() for k in names}
    q = family.from_guide(params)
    extra = {"num_iters": out.num_iters, "diverged": out.diverged, "lr": lr, "elbo_estimator": loss_cls.__name__,
             "num_particles": num_particles, "objective_name": "elbo (Monte Carlo estimate)"}
    closed = float(model.elbo(data, q))
    extra["elbo"] = closed
    seconds = [t - e for t, e in zip(out.seconds, eval_seconds)]  # optimisation time only
    trace = {"objective": torch.tensor(out.objective, dtype=torch.float64),
             "seconds": torch.tensor(seconds, dtype=torch.float64)}
    for k, v in monitored.items():
        trace[k] = torch.tensor(v[: len(out.objective)], dtype=torch.float64)
    trace["elbo"][len(out.objective) - 1] = closed  # the final state is always scored
    return variational_result("svi", model, data, q, generator, num_samples=num_samples, objective=closed,
                              trace=trace, seed=seed, wall_time=wall, extra=extra)
