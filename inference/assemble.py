"""What every method shares after its loop: argument checks, per-chain seeds, and the assembly of an
InferenceResult (attributes, dims and coords, the pointwise log likelihood, PSIS k-hat of a variational q)."""

from __future__ import annotations

import platform
from typing import Any

import numpy as np
import torch

from inference.results import InferenceResult
from models.protocol import Invariants, PointwiseLogLik

__all__ = ["FitFailed", "check_finite_fit", "versions", "seed_value", "chain_seeds", "check_positive_int", "check_seed",
           "make_result",
           "pointwise_log_likelihood", "vi_khat", "draw_means", "variational_draws", "MAX_LOG_LIK_ENTRIES",
           "check_draws_memory", "available_memory"]


def versions() -> dict[str, str]:
    """Versions recorded in every result (Pyro's from its package metadata: importing Pyro costs 0.15 s, and a
    closed-form fit does not otherwise need it), and which compiled loops (models._kernels) this process loaded."""
    import sys
    from importlib import metadata

    from models import _kernels

    pyro = sys.modules.get("pyro")
    return {"python": platform.python_version(), "torch": torch.__version__,
            "pyro": pyro.__version__ if pyro is not None else metadata.version("pyro-ppl"), "numpy": np.__version__,
            "kernels": _kernels.loaded()}


def seed_value(seed: int | torch.Generator) -> int | str:
    return int(seed) if isinstance(seed, (int, np.integer)) else "generator"


def chain_seeds(seed: int, num_chains: int) -> list[int]:
    """Independent per-chain seeds derived from one seed (numpy SeedSequence spawning)."""
    return [int(s.generate_state(1)[0]) for s in np.random.SeedSequence(seed).spawn(num_chains)]


def check_positive_int(name: str, value: Any, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def check_seed(seed: Any, why: str = "") -> int:
    """A seed as a Python int: any non-negative integer, numpy integer scalars included."""
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, (bool, np.bool_)) or seed < 0:
        raise ValueError(f"seed must be a non-negative int{why}, got {seed!r}")
    return int(seed)


class FitFailed(RuntimeError):
    """A fit that did not produce a usable result: its objective became NaN or infinite (diverged), or its estimates
    are not finite. Raised instead of returning the result, so that it is never reported or saved as one."""


def _first_non_finite(groups: dict[str, dict | None]) -> str | None:
    for group, arrays in groups.items():
        for name, value in (arrays or {}).items():
            arr = value.detach().cpu().numpy() if isinstance(value, torch.Tensor) else np.asarray(value)
            if np.issubdtype(arr.dtype, np.number) and not np.all(np.isfinite(arr)):
                n_bad = int((~np.isfinite(arr)).sum())
                return f"{group} {name!r} has {n_bad} non-finite value(s) of {arr.size}"
    return None


def check_finite_fit(method: str, model: Any, *, posterior: dict, point: dict, variational: dict | None,
                     trace: dict, attrs: dict) -> None:
    """Raise FitFailed when the fit diverged or any estimate is NaN or infinite (the message says where)."""
    name = getattr(model, "name", type(model).__name__)
    if attrs.get("diverged"):
        obj = np.asarray(trace.get("objective", []), dtype=float)
        at = int(np.asarray(attrs.get("num_iters", obj.shape[-1] - 1 if obj.size else 0))) + 1
        raise FitFailed(f"{method} on {name} diverged: the objective became NaN or infinite at iteration {at}; "
                        "no result is returned (try other hyperparameters, a smaller step or float64)")
    where = _first_non_finite({"posterior": posterior, "point": point, "variational": variational})
    if where is None:
        obj = np.asarray(trace.get("objective", []), dtype=float)
        if obj.size and not np.all(np.isfinite(obj)):
            where = "the objective trace has non-finite values"
    if where is not None:
        raise FitFailed(f"{method} on {name} failed: {where}; no result is returned")


def make_result(method: str, model: Any, data: Any, *, posterior: dict, point: dict, variational: dict | None,
                trace: dict, sample_stats: dict | None = None, seed: Any, wall_time: float,
                extra_attrs: dict | None = None) -> InferenceResult:
    """Assemble an InferenceResult with the attributes every method records; raises FitFailed for a diverged or
    non-finite fit (see check_finite_fit)."""
    check_finite_fit(method, model, posterior=posterior, point=point, variational=variational, trace=trace,
                     attrs=extra_attrs or {})
    attrs = {"method": method, "model": model.name, "seed": seed_value(seed),
             "dtype": str(data.dtype).replace("torch.", ""), "device": str(data.device), "wall_time": wall_time,
             "data": repr(data), "versions": versions()}
    attrs.update(extra_attrs or {})
    dims = dict(model.dims)
    dims.update(model.invariant_dims if isinstance(model, Invariants) else {})
    coords = model.coords(data) if isinstance(model, Invariants) else {}
    log_lik = pointwise_log_likelihood(model, data, posterior, attrs)
    return InferenceResult(method, model, posterior, point, variational, trace, sample_stats or {}, attrs, dims,
                           coords, data, log_lik)


MAX_LOG_LIK_ENTRIES = 20_000_000


def pointwise_log_likelihood(model: Any, data: Any, posterior: dict, attrs: dict) -> dict[str, Any]:
    """log p(y_i | theta_s) per observation and draw (chain, draw, n), for ArviZ's loo/waic, when the model has the
    PointwiseLogLik capability and the array stays under MAX_LOG_LIK_ENTRIES (else noted in attrs). The number of
    observations n comes from the model's ``pointwise_size(data)`` where it has one, else from one draw."""
    if not isinstance(model, PointwiseLogLik) or not posterior:
        return {}
    first = next(iter(posterior.values()))
    S = int(np.prod(np.shape(first)[:2]))
    with torch.no_grad():
        if hasattr(model, "pointwise_size"):  # (optional hook: the count without a one-draw probe of that size)
            n = int(model.pointwise_size(data))
        else:
            probe = model.pointwise_log_lik(data, **{k: torch.as_tensor(np.asarray(v))[:1, :1]
                                                     for k, v in posterior.items()})
            n = sum(int(np.prod(v.shape[2:])) for v in probe.values())
        if n * S > MAX_LOG_LIK_ENTRIES:
            attrs["log_likelihood"] = f"not stored: {S} draws x {n} observations exceeds {MAX_LOG_LIK_ENTRIES}"
            return {}
        out = model.pointwise_log_lik(data, **{k: torch.as_tensor(np.asarray(v)) for k, v in posterior.items()})
    return {k: v.detach().cpu().numpy() for k, v in out.items()}


def vi_khat(q: Any, draws: dict) -> dict[str, Any]:
    """PSIS k-hat of a variational q from draws of q that carry their "log_joint"."""
    from inference.results import psis_khat

    if "log_joint" not in draws:
        return {}
    with torch.no_grad():
        log_q = q.log_prob(draws).cpu().numpy()
        log_w = torch.as_tensor(draws["log_joint"]).cpu().numpy() - log_q
    if log_w.size >= 20 and np.ptp(log_q) == 0 and np.ptp(log_w) == 0:  # (constant weights from distinct draws: q = p)
        return {"psis_khat": float("nan"),
                "psis_khat_verdict": "not computed (the draws from q are all alike: q is all but a point mass)"}
    k = psis_khat(log_w)
    if k != k:
        why = "fewer than 20 draws from q" if log_w.size < 20 else "the largest importance weights are all equal"
        return {"psis_khat": k, "psis_khat_verdict": f"not computed ({why})"}
    verdict = "good (< 0.5)" if k < 0.5 else ("usable (0.5-0.7)" if k < 0.7 else "unreliable (> 0.7)")
    return {"psis_khat": k, "psis_khat_verdict": verdict}


def variational_result(method: str, model: Any, data: Any, q: Any, generator: torch.Generator, *, num_samples: int,
                       objective: float, trace: dict, seed: Any, wall_time: float, extra: dict) -> Any:
    """The InferenceResult of a variational method (CAVI, SVI, stochastic VI): ``num_samples`` draws from q with the
    model's invariant quantities as the posterior (one chain), q's means as the point estimate, q's parameters, PSIS
    k-hat of q and the model's attributes of the final ``objective`` added to ``extra``."""
    draws, mean = variational_draws(model, data, q, num_samples, generator)
    attrs = {**extra, **vi_khat(q, draws), **model.objective_attrs(data, objective)}
    return make_result(method, model, data, posterior={k: v[None] for k, v in draws.items()}, point=mean,
                       variational=q.to_dict(), trace=trace, seed=seed, wall_time=wall_time, extra_attrs=attrs)


def draw_means(model: Any, posterior: dict) -> dict:
    """Point estimates from draws (chain, draw, ...): the model's sites averaged within chain 0 (factors are only
    meaningful within one chain: label switching), invariant quantities over every chain; discrete sites have no
    mean and are left out."""
    return {k: (v[0].mean(0) if k in model.sites else v.mean((0, 1))) for k, v in posterior.items()
            if torch.as_tensor(v).is_floating_point()}


# peak memory of num_samples draws from q, their invariant quantities, log q and the result's copies, over the
# draws' own size (q.mean()'s): measured 2.2 for Poisson MF, K = 40 (100 draws at 1.5e6 nonzeros, 20 at 1.5e7, the
# sweeps' own memory included); 2.5 leaves a margin, since running out of memory would lose the fit
DRAWS_MEMORY_FACTOR = 2.5


def available_memory() -> int | None:
    """Bytes this process can still allocate: MemAvailable, capped by a cgroup v2 memory limit; None if unknown."""
    avail = None
    try:
        with open("/proc/meminfo") as f:
            avail = next(int(line.split()[1]) * 1024 for line in f if line.startswith("MemAvailable:"))
    except (OSError, StopIteration, ValueError):
        pass
    try:
        with open("/sys/fs/cgroup/memory.max") as f:
            limit = f.read().strip()
        with open("/sys/fs/cgroup/memory.current") as f:
            used = int(f.read())
        if limit != "max":
            avail = min(avail, int(limit) - used) if avail is not None else int(limit) - used
    except (OSError, ValueError):
        pass
    return avail


def check_draws_memory(q: Any, num_samples: int, available: int | None = None) -> None:
    """Refuse (ValueError naming num_samples) when ``num_samples`` draws from q would not fit in memory: about
    DRAWS_MEMORY_FACTOR x num_samples x the size of q's means. Call it before a fit, so that none is lost; CPU only
    (``available``: bytes, default :func:`available_memory`)."""
    mean = [torch.as_tensor(v) for v in q.mean().values()]
    if any(v.device.type != "cpu" for v in mean):
        return
    per_draw = sum(v.numel() * v.element_size() for v in mean)
    need = DRAWS_MEMORY_FACTOR * num_samples * per_draw
    available = available_memory() if available is None else available
    if available is not None and need > available:
        fits = int(available // (DRAWS_MEMORY_FACTOR * per_draw))
        raise ValueError(
            f"num_samples={num_samples}: the draws from q would take about {need / 2**30:.1f} GiB "
            f"({per_draw / 2**20:.0f} MiB a draw, with their log densities and copies) and "
            f"{available / 2**30:.1f} GiB is available; ask for num_samples <= {fits} (--samples on the command "
            "line), or fit with stochastic_vi on row blocks, which returns q without draws")


def variational_draws(model: Any, data: Any, q: Any, num_samples: int, generator: torch.Generator) -> tuple[dict, dict]:
    """Draws from q with the model's invariant quantities added, and q's means (exact where q gives them, else
    the mean of the draws): what CAVI and SVI store as (posterior, point). Refuses draws that would not fit in
    memory (:func:`check_draws_memory`)."""
    check_draws_memory(q, num_samples)
    draws = q.sample(num_samples, generator)
    draws.update(model.invariants(data, **draws))
    mean = q.mean()
    mean.update({k: v.mean(0) for k, v in draws.items() if k not in mean and v.is_floating_point()})
    return draws, mean
