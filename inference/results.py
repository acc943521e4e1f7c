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

    def summary(self) -> Any:
        """One row per posterior variable (a pandas DataFrame): shape, mean of the point estimate, mean posterior
        sd."""
        import pandas as pd

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

    # -- ArviZ and NetCDF ---------------------------------------------------------------------------
    def _groups(self, site_draws: bool = True) -> dict[str, dict[str, tuple[tuple[str, ...], np.ndarray]]]:
        """The InferenceData layout: group -> variable -> (dimension names, array). Draws lead with (chain, draw),
        the trace with (chain, iteration) or (iteration,); event axes are named by ``dims`` when the ranks agree,
        else ``<name>_dim_<i>`` (ArviZ's default). site_draws=False leaves out the draws of the model's sites and
        the pointwise log likelihood (what a variational q reproduces from its parameters)."""
        def variables(d: dict[str, Any] | None, lead: tuple[str, ...]) -> dict[str, tuple[tuple[str, ...], np.ndarray]]:
            out = {}
            for k, v in (d or {}).items():
                v = np.asarray(v)
                event = tuple(self.dims.get(k, ()))
                if len(event) != v.ndim - len(lead):
                    event = tuple(f"{k}_dim_{i}" for i in range(v.ndim - len(lead)))
                out[k] = (lead + event, v)
            return out

        sites = () if site_draws else getattr(self.model, "sites", ())
        groups = {"posterior": variables({k: v for k, v in self.posterior.items() if k not in sites},
                                         ("chain", "draw")),
                  "sample_stats": variables(self.sample_stats, ("chain", "draw")),
                  "log_likelihood": variables(_np(self.log_likelihood) if site_draws else {}, ("chain", "draw")),
                  "point": variables(self.point, ()), "variational": variables(self.variational, ()),
                  "trace": variables(self.trace, ("chain", "iteration") if np.ndim(self.trace["objective"]) == 2
                                     else ("iteration",))}
        return {g: v for g, v in groups.items() if v or g == "posterior"}

    def _coords(self, variables: dict[str, tuple[tuple[str, ...], np.ndarray]]) -> dict[str, np.ndarray]:
        """Coordinate values of the dimensions these variables use: the labels in ``coords`` when their length fits,
        0..n-1 for chain, draw and iteration; other dimensions get none."""
        sizes = {d: n for dims, v in variables.values() for d, n in zip(dims, v.shape)}
        out = {}
        for d, n in sizes.items():
            if d in self.coords and len(self.coords[d]) == n:
                out[d] = np.asarray(self.coords[d])
            elif d in ("chain", "draw", "iteration"):
                out[d] = np.arange(n)
        return out

    def to_arviz(self):
        """An ``arviz.InferenceData`` with posterior, sample_stats, log_likelihood and the extra groups point,
        variational and trace; dims and coords carry the labels; attrs are stored as JSON in the posterior attrs."""
        az = _arviz()
        import xarray as xr

        datasets = {g: xr.Dataset({k: (dims, v) for k, (dims, v) in variables.items()}, coords=self._coords(variables))
                    for g, variables in self._groups().items()}
        datasets["posterior"].attrs["inferlab"] = json.dumps(self._meta())
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # point, variational, trace are not ArviZ's own groups
            return az.InferenceData(**datasets)

    def _meta(self) -> dict[str, Any]:
        if isinstance(self.model, dict):  # a loaded result whose model class is not registered here
            model = self.model
        else:
            model = {"name": self.model.name, "hyperparameters": self.model.hyperparameters()}
        return {"method": self.method, "model": model, "attrs": self.attrs,
                "dims": {k: list(v) for k, v in self.dims.items()}}

    def save(self, path: str | os.PathLike, site_draws: bool | None = None) -> Path:
        """Write the result as NetCDF-4 in ArviZ's InferenceData layout (``az.from_netcdf`` reads it; so does
        :meth:`load`). Written directly with h5netcdf, uncompressed (no xarray or ArviZ import: the write costs about
        what the bytes cost); a temporary file is renamed into place.

        site_draws: write the draws of the model's sites (and the pointwise log likelihood). Default: yes for
            samplers, whose draws are the result; no for variational results, whose q (the ``variational`` group)
            is the result and reproduces them; their invariant quantities' draws and the point estimates are always
            written. (100 draws of LastFM's theta and eta at K = 40 are 96 MB.)"""
        import h5py
        import h5netcdf

        path = Path(path)
        if site_draws is None:
            site_draws = self.variational is None
        meta = json.dumps({**self._meta(), "site_draws": bool(site_draws)})
        with atomic_path(path) as tmp, h5netcdf.File(tmp, "w") as f:
            for name, variables in self._groups(site_draws).items():
                g = f.create_group(name)
                g.dimensions = {d: n for dims, v in variables.values() for d, n in zip(dims, v.shape)}
                for d, values in self._coords(variables).items():
                    if values.dtype.kind in "OUS":
                        g.create_variable(d, (d,), dtype=h5py.string_dtype(), data=values.astype(str).astype(object))
                    else:
                        g.create_variable(d, (d,), data=values)
                for k, (dims, v) in variables.items():
                    if v.dtype == bool:  # NetCDF has no booleans: int8 marked as xarray marks them
                        g.create_variable(k, dims, data=v.astype(np.int8)).attrs["dtype"] = "bool"
                    else:
                        g.create_variable(k, dims, data=v)
                if name == "posterior":
                    g.attrs["inferlab"] = meta
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> InferenceResult:
        """Read a result written by :meth:`save`."""
        import h5netcdf

        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"no result file at {path}")
        groups: dict[str, dict[str, np.ndarray]] = {}
        coords: dict[str, np.ndarray] = {}
        try:
            with h5netcdf.File(path, "r") as f:
                meta = json.loads(f["posterior"].attrs["inferlab"])
                for name, g in f.groups.items():
                    groups[name] = {}
                    for k, v in g.variables.items():
                        values = v[...]
                        if k in g.dimensions:
                            if k not in ("chain", "draw", "iteration"):
                                coords[k] = np.array([x.decode() if isinstance(x, bytes) else x for x in values]
                                                     if values.dtype == object else values)
                        else:
                            groups[name][k] = np.asarray(values, dtype=bool if v.attrs.get("dtype") == "bool" else None)
        except (OSError, KeyError, ValueError) as exc:
            raise ValueError(f"{path} is not an inferlab result file ({exc})") from exc
        model_cls = registry.model_class(meta["model"]["name"])  # unregistered: the model stays a plain dict
        model = model_cls(**meta["model"]["hyperparameters"]) if model_cls else meta["model"]
        return cls(meta["method"], model, groups["posterior"], groups.get("point", {}), groups.get("variational"),
                   groups.get("trace", {}), groups.get("sample_stats", {}), meta["attrs"],
                   {k: tuple(v) for k, v in meta["dims"].items()}, coords, None, groups.get("log_likelihood", {}))


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
    """Pareto k-hat of importance weights log p(theta, y) - log q(theta) over S draws from q (Vehtari et al., PSIS):
    below 0.5 the approximation is good for importance sampling, 0.5-0.7 usable, above 0.7 unreliable. NaN with
    fewer than 20 draws or when the tail's weights are all equal, inf with non-finite weights or a tail of 4 or fewer
    draws.

    The generalised Pareto shape of the largest M = ceil(min(S / 5, 3 sqrt(S))) weights (above the (M + 1)-th
    largest, u), by the empirical Bayes estimate of Zhang and Stephens (2009) with PSIS's weakly informative prior
    on k (``_gpd_shape``). Written in NumPy so that a CAVI fit needs no ArviZ import; equal to ArviZ's psislw k to
    rounding (tests/test_results.py)."""
    lw = np.asarray(log_weights, dtype=np.float64).reshape(-1)
    if lw.size < 20:  # too few draws to fit the Pareto tail
        return float("nan")
    if not np.all(np.isfinite(lw)):
        return float("inf")
    S = lw.size
    x = lw - lw.max()
    M = int(np.ceil(min(S / 5.0, 3 * np.sqrt(S))))
    u = max(np.sort(x)[-M - 1], np.log(np.finfo(float).tiny))   # the tail is everything above u
    tail = np.sort(x[x > u])
    if tail.size <= 4:
        return float("inf")
    with np.errstate(divide="ignore", invalid="ignore"):  # equal tail weights: no Pareto tail, k is NaN (as ArviZ's)
        return _gpd_shape(np.exp(tail) - np.exp(u))


def _gpd_shape(y: np.ndarray) -> float:
    """Shape k of a generalised Pareto fitted to exceedances y (n,), sorted ascending, > 0 (Zhang and Stephens 2009).
    With theta = -k / sigma the shape given theta is k(theta) = mean log(1 - theta y) and the profile
    log-likelihood n (log(-theta / k(theta)) - k(theta) - 1); theta is its posterior mean over m = 30 + floor(sqrt n)
    grid points theta_j = 1 / y_n + (1 - sqrt(m / (j - 1/2))) / (3 y_(first quartile)) weighted by the profile
    likelihood; k = k(theta), then pulled towards 0.5 by a prior worth 10 observations."""
    n = y.size
    m = 30 + int(np.sqrt(n))
    theta = 1 / y[-1] + (1 - np.sqrt(m / (np.arange(1, m + 1) - 0.5))) / (3 * y[int(n / 4 + 0.5) - 1])
    k = np.log1p(-theta[:, None] * y).mean(1)        # k(theta_j)
    log_lik = n * (np.log(-theta / k) - k - 1)
    w = 1 / np.exp(log_lik - log_lik[:, None]).sum(1)   # softmax of log_lik, computed without overflow
    keep = w >= 10 * np.finfo(float).eps
    theta_post = np.sum(theta[keep] * w[keep]) / w[keep].sum()
    k_post = np.log1p(-theta_post * y).mean()
    return float((n * k_post + 10 * 0.5) / (n + 10))


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
