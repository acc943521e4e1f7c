"""InferenceResult: what every method returns, and its one ArviZ converter.

This module holds every ArviZ call of the project, so that a port to ArviZ 1.x touches one place.
"""

from __future__ import annotations

import json
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from models import registry
from models._io import atomic_path

__all__ = ["InferenceResult", "rhat", "ess", "mcse_mean", "psis_khat", "sampler_diagnostic_figures"]


def _arviz():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        warnings.simplefilter("ignore", UserWarning)
        import arviz as az
    return az


def _np(d: dict[str, Any] | None) -> dict[str, np.ndarray] | None:
    if d is None:
        return None
    out = {}
    for k, v in d.items():
        if hasattr(v, "detach"):
            v = v.detach().cpu().numpy()
        out[k] = np.asarray(v)
    return out


@dataclass(frozen=True, eq=False)
class InferenceResult:
    """The output of every ``fit_<method>``.

    Attributes:
        method: "cavi", "gibbs", "svi", "nuts", ...
        model: the model object (hyperparameters only).
        posterior: site or invariant name -> (chain, draw, *event) array. Real chains for Gibbs/NUTS,
            S independent draws from q for CAVI/SVI (one chain), one draw for EM/MAP.
        point: name -> array: exact posterior means (CAVI/SVI: under q; samplers: draw means) or MAP.
        variational: name -> array of the variational parameters, or None for samplers.
        trace: per-iteration arrays: "objective" (ELBO or log joint), "seconds" (cumulative wall time).
            For samplers, shape (chain, iteration).
        sample_stats: name -> (chain, draw) array (e.g. "log_joint", "diverging").
        attrs: seed, dtype, versions, timings, convergence flags (JSON-serialisable).
        dims: name -> dimension names of the event axes.
        coords: dimension name -> labels.
        data: the data object the result was fitted to (kept in memory only, not saved).
        log_likelihood: name -> (chain, draw, n) pointwise log p(y_i | theta) per observation (ArviZ's
            log_likelihood group, for loo/waic), when the model declares ``pointwise_log_lik``.
    """

    method: str
    model: Any
    posterior: dict[str, np.ndarray]
    point: dict[str, np.ndarray]
    variational: dict[str, np.ndarray] | None
    trace: dict[str, np.ndarray]
    sample_stats: dict[str, np.ndarray] = field(default_factory=dict)
    attrs: dict[str, Any] = field(default_factory=dict)
    dims: dict[str, tuple[str, ...]] = field(default_factory=dict)
    coords: dict[str, np.ndarray] = field(default_factory=dict)
    data: Any = field(default=None, repr=False)
    log_likelihood: dict[str, np.ndarray] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("posterior", "point", "variational", "trace", "sample_stats", "coords"):
            object.__setattr__(self, name, _np(getattr(self, name)))

    # -- views -------------------------------------------------------------------------------------
    @property
    def objective(self) -> float:
        """Final value of the objective trace (last iteration; mean over chains for samplers)."""
        obj = np.asarray(self.trace["objective"])
        return float(np.mean(obj[..., -1]))

    @property
    def wall_time(self) -> float:
        return float(self.attrs.get("wall_time", np.nan))

    def summary(self) -> pd.DataFrame:
        """One row per posterior variable: shape, mean of the point estimate, mean posterior sd."""
        rows = []
        for name, draws in self.posterior.items():
            sd = draws.std(axis=(0, 1)).mean() if draws.shape[0] * draws.shape[1] > 1 else np.nan
            pt = self.point.get(name, draws.mean(axis=(0, 1)))
            rows.append({"variable": name, "shape": tuple(draws.shape[2:]), "mean": float(np.mean(pt)),
                         "mean_sd": float(sd)})
        return pd.DataFrame(rows).set_index("variable")

    def describe(self) -> str:
        """A short multi-line text summary (method, model, objective, time, iterations)."""
        obj_name = self.attrs.get("objective_name", "objective")
        lines = [f"{self.method} on {self.attrs.get('model', type(self.model).__name__)} "
                 f"({self.attrs.get('data', '')})",
                 f"  {obj_name}: {self.objective:.6g}",
                 f"  wall time: {self.wall_time:.3f} s over {self.attrs.get('num_iters', '?')} iterations"]
        for k in ("rescaled_elbo", "converged", "diverged", "monotone_violations"):
            if k in self.attrs:
                lines.append(f"  {k}: {self.attrs[k]}")
        return "\n".join(lines)

    # -- ArviZ -------------------------------------------------------------------------------------
    def to_arviz(self):
        """An ``arviz.InferenceData`` with posterior, sample_stats and the extra groups point, variational
        and trace; dims and coords carry the labels; attrs are stored as JSON in the posterior attrs."""
        az = _arviz()
        import xarray as xr

        coords = {k: list(v) for k, v in self.coords.items()}
        idata = az.from_dict(posterior=self.posterior, sample_stats=self.sample_stats or None,
                             log_likelihood=self.log_likelihood or None,
                             dims={k: list(v) for k, v in self.dims.items()}, coords=coords)
        idata.posterior.attrs["inferlab"] = json.dumps(self._meta())

        def dataset(d: dict[str, np.ndarray], lead: tuple[str, ...] = ()) -> xr.Dataset:
            variables = {}
            for k, v in d.items():
                event = tuple(self.dims.get(k, ()))
                if len(event) != v.ndim - len(lead):
                    event = tuple(f"{k}_dim_{i}" for i in range(v.ndim - len(lead)))
                names = lead + event
                variables[k] = (names, v)
            used = {dname for (names, _) in variables.values() for dname in names}
            return xr.Dataset(variables, coords={k: v for k, v in coords.items() if k in used})

        extra = {"point": dataset(self.point)}
        if self.variational:
            extra["variational"] = dataset(self.variational)
        trace_lead = ("chain", "iteration") if np.ndim(self.trace["objective"]) == 2 else ("iteration",)
        extra["trace"] = dataset(self.trace, trace_lead)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            idata.add_groups(extra)
        return idata

    def _meta(self) -> dict[str, Any]:
        if isinstance(self.model, dict):  # a loaded result whose model class is not registered here
            model = self.model
        else:
            model = {"name": self.model.name, "hyperparameters": self.model.hyperparameters()}
        return {"method": self.method, "model": model, "attrs": self.attrs,
                "dims": {k: list(v) for k, v in self.dims.items()}}

    def save(self, path: str | os.PathLike) -> Path:
        """Write the result as NetCDF (ArviZ InferenceData); a temporary file is renamed into place."""
        path = Path(path)
        idata = self.to_arviz()
        with atomic_path(path) as tmp:
            idata.to_netcdf(tmp, engine="h5netcdf")
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> InferenceResult:
        """Read a result written by :meth:`save`."""
        az = _arviz()
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"no result file at {path}")
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)
                idata = az.from_netcdf(path, engine="h5netcdf")
            meta = json.loads(idata.posterior.attrs["inferlab"])
        except (OSError, KeyError, ValueError) as exc:
            raise ValueError(f"{path} is not an inferlab result file ({exc})") from exc
        model_cls = registry.model_class(meta["model"]["name"])  # unregistered: the model stays a plain dict
        model = model_cls(**meta["model"]["hyperparameters"]) if model_cls else meta["model"]

        def group(name: str, drop_chain_draw: bool = False) -> dict[str, np.ndarray] | None:
            if name not in idata.groups():
                return None
            return {k: v.values for k, v in idata[name].data_vars.items()}

        coords = {}
        for k, v in idata.posterior.coords.items():
            if k not in ("chain", "draw"):
                coords[k] = v.values
        sample_stats = group("sample_stats") or {}
        return cls(meta["method"], model, group("posterior"), group("point") or {}, group("variational"),
                   group("trace") or {}, sample_stats, meta["attrs"],
                   {k: tuple(v) for k, v in meta["dims"].items()}, coords, None, group("log_likelihood") or {})


# ---------------------------------------------------------------------------------------------------
# Diagnostics on arrays shaped (chain, draw, *event) (thin wrappers so that ArviZ stays in this module)


def _diag(fn_name: str, draws: np.ndarray, **kw) -> np.ndarray:
    az = _arviz()
    draws = np.asarray(draws, dtype=np.float64)
    ds = az.convert_to_dataset({"x": draws})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return np.asarray(getattr(az, fn_name)(ds, **kw)["x"].values)


def rhat(draws: np.ndarray) -> np.ndarray:
    """Rank-normalised split R-hat (Vehtari et al. 2021) per event element."""
    return _diag("rhat", draws)


def ess(draws: np.ndarray, kind: str = "bulk") -> np.ndarray:
    """Effective sample size ("bulk" or "tail") per event element."""
    return _diag("ess", draws, method=kind)


def mcse_mean(draws: np.ndarray) -> np.ndarray:
    """Monte Carlo standard error of the posterior mean per event element."""
    return _diag("mcse", draws, method="mean")


def psis_khat(log_weights: np.ndarray) -> float:
    """Pareto k-hat of importance weights log p(theta, y) - log q(theta) over draws from q (Vehtari et al.,
    PSIS): below 0.5 the approximation is good for importance sampling, 0.5-0.7 usable, above 0.7 unreliable.
    NaN with fewer than 20 draws."""
    az = _arviz()
    lw = np.asarray(log_weights, dtype=np.float64).reshape(-1)
    if lw.size < 20:  # too few draws to fit the Pareto tail
        return float("nan")
    if not np.all(np.isfinite(lw)):
        return float("inf")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _, k = az.psislw(lw - lw.max())
    return float(np.asarray(k).reshape(-1)[0])


def sampler_diagnostic_figures(result: "InferenceResult", var: str, max_entries: int = 4) -> dict[str, Any]:
    """ArviZ rank plot and trace plot of the first ``max_entries`` entries of one posterior quantity:
    {"rank": figure, "trace": figure} (the caller saves and closes them)."""
    az = _arviz()
    draws = np.asarray(result.posterior[var])
    flat = draws.reshape(draws.shape[0], draws.shape[1], -1)[..., :max_entries]
    ds = az.convert_to_dataset({var: flat}, dims={var: ["entry"]})
    figures = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for kind in ("rank", "trace"):
            axes = az.plot_rank(ds, var_names=[var]) if kind == "rank" else az.plot_trace(ds, var_names=[var])
            fig = np.asarray(axes).reshape(-1)[0].get_figure()
            fig.suptitle(f"{result.method}: {kind} plot of {var} (first {flat.shape[-1]})", fontsize=9)
            figures[kind] = fig
    return figures
