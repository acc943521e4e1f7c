"""Blocked Gibbs sampling for any model with the Gibbs capability (models.protocol.Gibbs).

The model supplies ``gibbs_init(data, generator)``, ``gibbs_sweep(data, state, generator) -> state``,
``log_joint`` and ``invariants``. Chains run one after another, each from its own seed, or as one batch for models
with the BatchedGibbs capability.
"""

from __future__ import annotations

import time
from typing import Any, Callable

import torch

from inference.assemble import chain_seeds, check_positive_int, check_seed, draw_means, make_result
from inference.driver import run_loop
from inference.results import InferenceResult
from models.protocol import BatchedGibbs, Gibbs, Invariants, LogJoint, Model, require

__all__ = ["fit_gibbs"]


def fit_gibbs(model: Any, data: Any, *, seed: int, num_samples: int = 500, warmup: int | None = None,
              num_chains: int = 4, thin: int = 1, init: Any = None, batched: bool | None = None,
              dtype: torch.dtype = torch.float64, device: str = "cpu", progress: bool = True,
              callback: Callable | None = None) -> InferenceResult:
    """Run ``num_chains`` Gibbs chains; keep every ``thin``-th sweep after ``warmup`` sweeps.

    Args:
        seed: int; chain c uses an independent seed spawned from it.
        num_samples: kept draws per chain.
        warmup: sweeps discarded first (default: num_samples).
        init: None (a prior draw per chain) or a list of per-chain states.
        batched: sweep all chains at once as one batch (a leading chain dimension), for models with the
            BatchedGibbs capability; None (default): batched when the model can and there is more than one chain.
            The chains stay independent (one random stream feeds them all); the cost per sweep is about that of one
            chain when the problem is small enough that per-operation overheads dominate.
        callback: callback(sweep, state, log_joint) -> stop? (per chain; batched: the summed log joint), after every
            sweep; log_joint is None at the sweeps where it is not evaluated (below).

    Returns:
        InferenceResult with posterior draws (chain, draw, ...) of every site and invariant quantity,
        sample_stats["log_joint"] (chain, draw), trace["objective"] = the log joint (chain, L) at the sweeps
        trace["at_sweep"] (chain, L): every sweep when thin = 1, else every thin-th sweep of the warmup, every kept
        sweep and the last (the log joint of a sweep costs about a third of the sweep; the chain does not need it).
    """
    require(model, Gibbs, Model, LogJoint, Invariants, method="fit_gibbs")
    check_positive_int("num_samples", num_samples)
    check_positive_int("num_chains", num_chains)
    check_positive_int("thin", thin)
    warmup = num_samples if warmup is None else check_positive_int("warmup", warmup, minimum=0)
    check_seed(seed, " for Gibbs (one seed per chain is spawned from it)")
    data = model.prepare(data, dtype=dtype, device=device)
    total = warmup + num_samples * thin
    can_batch = isinstance(model, BatchedGibbs) and model.gibbs_batched_chains
    if batched and not can_batch:
        raise ValueError(f"batched=True: model {model.name!r} cannot sweep chains as one batch")
    if batched is None:
        batched = can_batch and num_chains > 1 and init is None
    if batched:
        return _fit_batched(model, data, seed=seed, num_chains=num_chains, warmup=warmup, thin=thin, total=total,
                            progress=progress, callback=callback)
    chains, traces, seconds, sweeps, diverged = [], [], [], [], False
    start = time.perf_counter()
    for c, chain_seed in enumerate(chain_seeds(seed, num_chains)):
        generator = torch.Generator().manual_seed(chain_seed)
        state = init[c] if init is not None else model.gibbs_init(data, generator)
        kept: list = []
        sweep = [0]

        def step(s, generator=generator, sweep=sweep):
            s = model.gibbs_sweep(data, s, generator)
            sweep[0] += 1
            return s, (model.log_joint(data, *s) if _evaluated(sweep[0], warmup, thin, total) else None)

        def keep(it, s, obj, kept=kept):
            if it > warmup and (it - warmup) % thin == 0:
                kept.append(s)
            return callback(it, s, obj) if callback is not None else None

        state, out = run_loop(step, state, num_iters=total, initial_objective=float(model.log_joint(data, *state)),
                              progress=progress, callback=keep, desc=f"Gibbs chain {c} {model.name}")
        diverged |= out.diverged
        if len(kept) == 0:
            raise RuntimeError(f"Gibbs chain {c} kept no draws (diverged at sweep {out.num_iters + 1})")
        chains.append({k: torch.stack([getattr(s, k) for s in kept]) for k in kept[0]._fields})
        traces.append(out.objective)
        seconds.append(out.seconds)
        sweeps.append(out.iterations)
    n = min(len(ch[model.sites[0]]) for ch in chains)
    posterior = {k: torch.stack([ch[k][:n] for ch in chains]) for k in chains[0]}
    posterior.update(model.invariants(data, **posterior))
    log_joint = posterior.pop("log_joint")
    L = min(len(t) for t in traces)
    point = draw_means(model, posterior)
    extra = {"num_iters": total, "warmup": warmup, "thin": thin, "num_chains": num_chains, "diverged": diverged,
             "objective_name": "log_joint"}
    return make_result("gibbs", model, data, posterior=posterior, point=point, variational=None,
                       trace={"objective": torch.tensor([t[:L] for t in traces], dtype=torch.float64),
                              "seconds": torch.tensor([s[:L] for s in seconds], dtype=torch.float64),
                              "at_sweep": torch.tensor([w[:L] for w in sweeps], dtype=torch.float64)},
                       sample_stats={"log_joint": log_joint}, seed=seed,
                       wall_time=time.perf_counter() - start, extra_attrs=extra)


def _fit_batched(model: Any, data: Any, *, seed: int, num_chains: int, warmup: int, thin: int, total: int,
                 progress: bool, callback: Callable | None) -> InferenceResult:
    """All chains in one batched state (C, ...): one sweep updates every chain."""
    generator = torch.Generator().manual_seed(chain_seeds(seed, 1)[0])
    state = model.gibbs_init(data, generator, num_chains=num_chains)
    per_sweep = [model.log_joint(data, *state)]  # (C,) per sweep
    kept: list = []

    sweep = [0]

    def step(s):
        s = model.gibbs_sweep(data, s, generator)
        sweep[0] += 1
        if not _evaluated(sweep[0], warmup, thin, total):
            return s, None
        lj = model.log_joint(data, *s)
        per_sweep.append(lj)
        return s, lj.sum()

    def keep(it, s, obj):
        if it > warmup and (it - warmup) % thin == 0:
            kept.append(s)
        return callback(it, s, obj) if callback is not None else None

    start = time.perf_counter()
    state, out = run_loop(step, state, num_iters=total, initial_objective=float(per_sweep[0].sum()), progress=progress,
                          callback=keep, desc=f"Gibbs {num_chains} chains (batched) {model.name}")
    wall = time.perf_counter() - start
    if len(kept) == 0:
        raise RuntimeError(f"Gibbs kept no draws (diverged at sweep {out.num_iters + 1})")
    posterior = {k: torch.stack([getattr(s, k) for s in kept], 1) for k in kept[0]._fields}  # (chain, draw, ...)
    posterior.update(model.invariants(data, **posterior))
    log_joint = posterior.pop("log_joint")
    L = len(out.objective)
    point = draw_means(model, posterior)
    extra = {"num_iters": total, "warmup": warmup, "thin": thin, "num_chains": num_chains, "diverged": out.diverged,
             "objective_name": "log_joint", "batched_chains": True}
    seconds = torch.tensor(out.seconds, dtype=torch.float64)
    at_sweep = torch.tensor(out.iterations, dtype=torch.float64)
    return make_result("gibbs", model, data, posterior=posterior, point=point, variational=None,
                       trace={"objective": torch.stack(per_sweep[:L], 1).to(torch.float64),
                              "seconds": seconds.expand(num_chains, L).clone(),
                              "at_sweep": at_sweep.expand(num_chains, L).clone()},
                       sample_stats={"log_joint": log_joint}, seed=seed, wall_time=wall, extra_attrs=extra)


def _evaluated(sweep: int, warmup: int, thin: int, total: int) -> bool:
    """Whether the log joint is evaluated after ``sweep`` (1-based): every sweep when thin = 1; else every thin-th
    sweep of the warmup, every kept sweep (warmup + j thin) and the last."""
    if thin == 1 or sweep == total:
        return True
    return (sweep - warmup) % thin == 0 if sweep > warmup else sweep % thin == 0
