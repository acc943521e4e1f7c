"""No-U-Turn sampling with Pyro for any model with a Pyro model (models.protocol.PyroModel): chains run one after
another, or in parallel processes (``processes``), each from its own seed. A model with the NUTSReparam capability is
sampled in its reparameterisation."""

from __future__ import annotations

import os
import sys
import time
from typing import Any, Callable

import pyro
import torch
from pyro.infer import MCMC, NUTS

from inference.assemble import chain_seeds, check_positive_int, check_seed, draw_means, make_result
from inference.results import InferenceResult
from models.protocol import Invariants, Model, NUTSReparam, PyroModel, require

__all__ = ["fit_nuts"]


def fit_nuts(model: Any, data: Any, *, seed: int, num_samples: int = 500, warmup: int | None = None,
             num_chains: int = 4, jit: bool = False, target_accept: float = 0.8, max_tree_depth: int = 10,
             init: Any = None, dtype: torch.dtype = torch.float64, device: str = "cpu", progress: bool = True,
             callback: Callable | None = None, processes: int = 1) -> InferenceResult:
    """Sample the model's collapsed posterior with NUTS (Pyro), ``num_chains`` chains.

    Uses ``model.nuts_model`` when the model has the NUTSReparam capability (a reparameterisation for NUTS, mapped
    back to the model's sites by ``model.nuts_postprocess``), else ``model.model``.

    Args:
        warmup: adaptation steps per chain (default: num_samples).
        jit: compile the potential with the PyTorch JIT (faster for long runs, slow to start).
        target_accept, max_tree_depth: NUTS settings.
        processes: run the chains in this many processes at once (spawned, one torch thread each; 0: one per core,
            at most one per chain); 1 (default): one after another in this process. Each chain's seed is the same
            either way, so the chains are the same Markov chains (their draws agree up to floating-point rounding).
        callback: unused (kept for the common signature); NUTS reports through Pyro's progress bar.

    Returns:
        InferenceResult with draws (chain, draw, ...), sample_stats["log_joint"] and ["diverging"], and
        trace["objective"] = log joint per kept draw (chain, draw).
    """
    require(model, PyroModel, Model, Invariants, method="fit_nuts")
    check_positive_int("num_samples", num_samples)
    check_positive_int("num_chains", num_chains)
    processes = check_positive_int("processes", processes, minimum=0)
    warmup = num_samples if warmup is None else check_positive_int("warmup", warmup, minimum=0)
    check_seed(seed)
    data = model.prepare(data, dtype=dtype, device=device)
    reparam = isinstance(model, NUTSReparam)
    _require_continuous(model, model.nuts_model if reparam else model.model, data)
    settings = dict(num_samples=num_samples, warmup=warmup, jit=jit, target_accept=target_accept,
                    max_tree_depth=max_tree_depth)
    seeds = chain_seeds(seed, num_chains)
    inits = init if init is not None else [None] * num_chains
    workers = min(num_chains, processes or os.cpu_count() or 1)
    start = time.perf_counter()
    if workers > 1 and device == "cpu":
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        if progress:  # (one progress bar per process would interleave; the chains report when they are done)
            print(f"NUTS {model.name}: {num_chains} chains in {workers} processes ({warmup} + {num_samples} "
                  f"iterations each)...", file=sys.stderr, flush=True)
        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
            futures = [pool.submit(_chain, model, data, s, i, settings, False, 1) for s, i in zip(seeds, inits)]
            chains = [f.result() for f in futures]
    else:
        chains = [_chain(model, data, s, i, settings, progress) for s, i in zip(seeds, inits)]
    per_chain, diverging, seconds, cpu_seconds = zip(*chains)
    posterior = {k: torch.stack([ch[k] for ch in per_chain]).to(data.dtype) for k in per_chain[0]}  # every latent site
    posterior.update(model.invariants(data, **posterior))
    log_joint = posterior.pop("log_joint")
    point = draw_means(model, posterior)
    n_div = int(torch.stack(diverging).sum())
    extra = {"num_iters": num_samples + warmup, "warmup": warmup, "num_chains": num_chains, "jit": jit,
             "divergences": n_div, "diverged": False, "chain_seconds": list(seconds), "objective_name": "log_joint",
             "processes": workers if workers > 1 and device == "cpu" else 1}
    if extra["processes"] > 1:  # this process only waited: the chains' CPU time is the processes'
        extra["cpu_seconds"] = float(sum(cpu_seconds))
    return make_result("nuts", model, data, posterior=posterior, point=point, variational=None,
                       trace={"objective": log_joint}, sample_stats={"log_joint": log_joint,
                                                                    "diverging": torch.stack(diverging)},
                       seed=seed, wall_time=time.perf_counter() - start, extra_attrs=extra)


def _chain(model: Any, data: Any, chain_seed: int, init: Any, settings: dict, progress: bool,
           threads: int | None = None) -> tuple[dict[str, torch.Tensor], torch.Tensor, float, float]:
    """One NUTS chain from its seed: (draws of every site {name: (num_samples, ...)}, divergences (num_samples,)
    bool, seconds, CPU seconds of this process). Runs in this process or in a spawned worker (``threads``: torch
    threads there)."""
    cpu0 = time.process_time()
    if threads is not None:
        torch.set_num_threads(threads)
    reparam = isinstance(model, NUTSReparam)
    with torch.random.fork_rng(devices=[]), pyro.get_param_store().scope():
        torch.manual_seed(chain_seed)
        kernel = NUTS(model.nuts_model if reparam else model.model, jit_compile=settings["jit"],
                      ignore_jit_warnings=True, target_accept_prob=settings["target_accept"],
                      max_tree_depth=settings["max_tree_depth"], max_plate_nesting=model.max_plate_nesting)
        mcmc = MCMC(kernel, num_samples=settings["num_samples"], warmup_steps=settings["warmup"],
                    disable_progbar=not progress, initial_params=init)
        t0 = time.perf_counter()
        mcmc.run(data)
        seconds = time.perf_counter() - t0
        samples = {k: v.detach() for k, v in mcmc.get_samples().items()}
        if reparam:  # a reparameterised NUTS model maps back to the model's sites
            samples = model.nuts_postprocess(samples, data)
        div = torch.zeros(settings["num_samples"], dtype=torch.bool)
        idx = mcmc.diagnostics().get("divergences", {}).get("chain 0", [])
        div[torch.as_tensor(list(idx), dtype=torch.long)] = True
    return samples, div, seconds, time.process_time() - cpu0


def _require_continuous(model: Any, fn: Callable, data: Any) -> None:
    """NUTS moves continuous parameters only: refuse a Pyro model whose latent sites are all discrete (they would
    be enumerated out, leaving nothing to sample)."""
    from pyro import poutine

    sites = [s for s in poutine.trace(fn).get_trace(data).nodes.values()
             if s["type"] == "sample" and not s["is_observed"] and not s["infer"].get("is_auxiliary")]
    if sites and all(s["fn"].support.is_discrete for s in sites):
        names = ", ".join(s["name"] for s in sites[:3]) + (", ..." if len(sites) > 3 else "")
        raise ValueError(f"fit_nuts: {model.name}'s latent sites are all discrete ({names}); NUTS samples continuous "
                         "parameters only: use gibbs, or exact inference where the model has it")
