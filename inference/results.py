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


def rhat(draws: np.ndarray) -> np.ndarray:
    """Rank-normalised split R-hat (Vehtari et al. 2021) per event element: the larger of the split R-hats of the
    rank-normalised draws and of the rank-normalised distances from the median. draws (chain, draw, *event) ->
    (*event,); NaN with fewer than 2 chains or 4 draws or a NaN draw. ArviZ's ``rhat(method="rank")``, vectorised
    over the elements (equal to ArviZ's to rounding: tests/test_results.py)."""
    x, event = _flat_draws(draws)
    out = np.full(x.shape[0], np.nan)
    ok = _valid(x, min_chains=2)
    if ok.any():
        split = _split_chains(x[ok])
        folded = np.abs(split - np.median(split.reshape(split.shape[0], -1), axis=1)[:, None, None])
        out[ok] = np.maximum(_split_rhat(_z_scale(split)), _split_rhat(_z_scale(folded)))
    return out.reshape(event)


def ess(draws: np.ndarray, kind: str = "bulk") -> np.ndarray:
    """Effective sample size per event element: "bulk" (of the rank-normalised split chains) or "tail" (the smaller of
    the ESS of the indicators of the 5% and 95% quantiles). draws (chain, draw, *event) -> (*event,); NaN with fewer
    than 4 draws or a NaN draw. ArviZ's ``ess(method=kind)``, vectorised over the elements."""
    if kind not in ("bulk", "tail"):
        raise ValueError(f"kind must be 'bulk' or 'tail', got {kind!r}")
    x, event = _flat_draws(draws)
    out = np.full(x.shape[0], np.nan)
    ok = _valid(x, min_chains=1)
    if ok.any():
        if kind == "bulk":
            out[ok] = _ess(_z_scale(_split_chains(x[ok])))
        else:
            flat = x[ok].reshape(int(ok.sum()), -1)
            low, high = (np.quantile(flat, p, axis=1)[:, None, None] for p in (0.05, 0.95))
            out[ok] = np.minimum(_ess(_split_chains((x[ok] <= low).astype(float))),
                                 _ess(_split_chains((x[ok] <= high).astype(float))))
    return out.reshape(event)


def mcse_mean(draws: np.ndarray) -> np.ndarray:
    """Monte Carlo standard error of the posterior mean per event element: sd / sqrt(ESS of the split chains).
    draws (chain, draw, *event) -> (*event,). ArviZ's ``mcse(method="mean")``, vectorised over the elements."""
    x, event = _flat_draws(draws)
    out = np.full(x.shape[0], np.nan)
    ok = _valid(x, min_chains=1)
    if ok.any():
        sd = np.std(x[ok].reshape(int(ok.sum()), -1), axis=1, ddof=1)
        out[ok] = sd / np.sqrt(_ess(_split_chains(x[ok])))
    return out.reshape(event)


# The vectorised diagnostics work on x (Q, chain, draw): Q event elements at once.

def _flat_draws(draws: np.ndarray) -> tuple[np.ndarray, tuple[int, ...]]:
    d = np.asarray(draws, dtype=np.float64)
    if d.ndim < 2:
        raise ValueError(f"draws must be shaped (chain, draw, ...), got shape {d.shape}")
    event = d.shape[2:]
    return np.moveaxis(d.reshape(d.shape[0], d.shape[1], -1), -1, 0), event


def _valid(x: np.ndarray, *, min_chains: int, min_draws: int = 4) -> np.ndarray:
    """(Q,) the elements ArviZ computes a value for: no NaN draw, enough chains and draws."""
    Q, C, S = x.shape
    return ~np.isnan(x).reshape(Q, -1).any(1) & (C >= min_chains) & (S >= min_draws)


def _split_chains(x: np.ndarray) -> np.ndarray:
    """(Q, C, S) -> (Q, 2C, S // 2): each chain's first and last halves as chains (a middle draw of an odd S out)."""
    half = x.shape[2] // 2
    return np.concatenate([x[:, :, :half], x[:, :, x.shape[2] - half:]], axis=1)


def _z_scale(x: np.ndarray) -> np.ndarray:
    """Rank normalisation: average ranks r over all draws of an element, z = Phi^-1((r - 3/8) / (n + 1/4))."""
    from scipy.special import ndtri

    Q, C, S = x.shape
    r = _average_ranks(x.reshape(Q, -1))
    return ndtri((r - 3 / 8) / (C * S + 1 / 4)).reshape(x.shape)


def _average_ranks(a: np.ndarray) -> np.ndarray:
    """Ranks 1..n along each row of a (Q, n), ties sharing the mean of their ranks (scipy's rankdata "average",
    vectorised over the rows: one sort, no loop)."""
    Q, n = a.shape
    order = np.argsort(a, axis=1)
    v = np.take_along_axis(a, order, 1)
    starts = np.ones((Q, n), dtype=bool)
    starts[:, 1:] = v[:, 1:] != v[:, :-1]          # a new value begins a group of ties
    pos = np.arange(n)
    if starts.all():                                # no ties (continuous draws): the rank is the position
        sorted_rank = np.broadcast_to(pos + 1.0, (Q, n))
    else:                                           # the mean of the first and last position of each group
        ends = np.ones((Q, n), dtype=bool)
        ends[:, :-1] = starts[:, 1:]
        first = np.maximum.accumulate(np.where(starts, pos, 0).T, axis=0).T
        last = np.minimum.accumulate(np.where(ends, pos, n).T[::-1], axis=0)[::-1].T
        sorted_rank = (first + last) / 2 + 1
    ranks = np.empty((Q, n))
    np.put_along_axis(ranks, order, sorted_rank, 1)
    return ranks


def _split_rhat(x: np.ndarray) -> np.ndarray:
    """R-hat of chains x (Q, C, S): sqrt((B / W + S - 1) / S), B = S var(chain means), W = mean chain variance."""
    S = x.shape[2]
    B = S * np.var(x.mean(2), axis=1, ddof=1)
    W = np.var(x, axis=2, ddof=1).mean(1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.sqrt((B / W + S - 1) / S)


def _ess(x: np.ndarray) -> np.ndarray:
    """ESS of chains x (Q, C, S) (Geyer's initial monotone sequence on the FFT autocovariances), as ArviZ's _ess.

    With rho_t = 1 - (W - mean_c acov_c(t)) / var+ and pair sums P_k = rho_2k + rho_2k+1, ArviZ's loop computes pairs
    k = 1, 2, ... while P_(k-1) > 0 and 2k - 1 < S - 3 (the last computed: k_last), makes the pair sums before
    k_last non-increasing (a running minimum) and sums tau = -1 + 2 sum_(k < k_last) P'_k + e, with e = rho_2k_last
    when it is positive or its pair sum is >= 0 (else 0); ESS = C S / max(tau, 1 / log10(C S))."""
    from scipy.fft import next_fast_len

    Q, C, S = x.shape
    out = np.full(Q, float(C * S))
    const = (x.max((1, 2)) - x.min((1, 2))) < np.finfo(float).resolution
    if const.all():
        return out
    x = x[~const]
    m = next_fast_len(2 * S)
    centred = x - x.mean(2, keepdims=True)
    f = np.fft.rfft(centred, n=m, axis=2)
    acov = np.fft.irfft(f * np.conjugate(f), n=m, axis=2)[:, :, :S] / S
    mean_var = acov[:, :, 0].mean(1) * S / (S - 1.0)
    var_plus = mean_var * (S - 1.0) / S
    if C > 1:
        var_plus = var_plus + np.var(x.mean(2), axis=1, ddof=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        rho = 1.0 - (mean_var[:, None] - acov.mean(1)) / var_plus[:, None]
    rho[:, 0] = 1.0
    k_lim = max(0, (S - 1) // 2 - 1)                      # pairs k >= 1 with 2k - 1 < S - 3
    P = rho[:, 0:2 * k_lim + 2:2] + rho[:, 1:2 * k_lim + 2:2]   # P_0 .. P_k_lim
    nonpos = P[:, :k_lim] <= 0                             # P_j for j < k_lim decides whether pair j + 1 is computed
    k_last = np.where(nonpos.any(1), nonpos.argmax(1), k_lim) if k_lim else np.zeros(len(x), dtype=int)
    k = np.arange(P.shape[1])
    before = k[None, :] < k_last[:, None]
    tau_pairs = np.where(before, np.minimum.accumulate(np.where(before, P, np.inf), axis=1), 0.0).sum(1)
    rows = np.arange(len(x))
    even = rho[rows, 2 * k_last]
    e = np.where((k_last == 0) | (even > 0) | (P[rows, k_last] >= 0), even, 0.0)
    tau = np.maximum(-1.0 + 2.0 * tau_pairs + e, 1.0 / np.log10(C * S))
    ess = C * S / tau
    ess[np.isnan(rho).any(1)] = np.nan
    out[~const] = ess
    return out


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
    """Rank plot and trace plot of the first ``max_entries`` entries of one posterior quantity, with each entry's
    rank-normalised R-hat and bulk ESS in its title: {"rank": figure, "trace": figure} (the caller saves and closes
    them). Drawn with matplotlib directly (as ArviZ's plot_rank and plot_trace draw them, without ArviZ's import).

    Rank plot (Vehtari et al. 2021): the draws of all chains are ranked together and each chain's ranks are
    histogrammed; chains that sample the same distribution give flat histograms around the dashed line (the count
    per bin if ranks were uniform). Trace plot: each chain's draws in order (left) and their histogram (right)."""
    import matplotlib.pyplot as plt

    draws = np.asarray(result.posterior[var], dtype=np.float64)
    flat = draws.reshape(draws.shape[0], draws.shape[1], -1)[..., :max_entries]
    C, S, E = flat.shape
    r_hat, bulk = rhat(flat), ess(flat)
    labels = [f"{var}[{e}]: R-hat {r_hat[e]:.3f}, ESS {bulk[e]:.0f}" for e in range(E)]
    colors = [f"C{c}" for c in range(C)]
    figures = {}
    fig, axes = plt.subplots(1, E, figsize=(3.2 * E, 3.0), squeeze=False)
    bins = max(5, min(20, S // 10))
    edges = np.linspace(0, C * S, bins + 1)
    for e, ax in enumerate(axes[0]):
        ranks = _average_ranks(flat[:, :, e].reshape(1, -1)).reshape(C, S)
        counts = np.stack([np.histogram(ranks[c], bins=edges)[0] for c in range(C)])
        scale = 0.8 / max(1, counts.max())  # each chain's row of bars is 0.8 high at the largest count
        for c in range(C):
            ax.bar(edges[:-1], counts[c] * scale, width=np.diff(edges), bottom=c, align="edge", color=colors[c],
                   alpha=0.8, edgecolor="white", lw=0.3)
            ax.axhline(c + (S / bins) * scale, color="k", ls="--", lw=0.6)  # the count if the ranks were uniform
        ax.set(yticks=np.arange(C) + 0.4, yticklabels=[f"chain {c}" for c in range(C)], xlabel="rank (all chains)")
        ax.set_title(labels[e], fontsize=7)
    fig.suptitle(f"{result.method}: rank plot of {var} (first {E})", fontsize=9)
    fig.tight_layout()
    figures["rank"] = fig
    fig, axes = plt.subplots(E, 2, figsize=(9, 1.9 * E), squeeze=False, gridspec_kw={"width_ratios": [1, 3]})
    for e in range(E):
        hist_ax, trace_ax = axes[e]
        for c in range(C):
            hist_ax.hist(flat[c, :, e], bins=30, histtype="step", color=colors[c], density=True)
            trace_ax.plot(flat[c, :, e], color=colors[c], lw=0.5, alpha=0.7)
        hist_ax.set_title(labels[e], fontsize=7)
        trace_ax.set_title(f"{var}[{e}] by draw", fontsize=7)
        hist_ax.tick_params(labelsize=6)
        trace_ax.tick_params(labelsize=6)
    fig.suptitle(f"{result.method}: trace plot of {var} (first {E})", fontsize=9)
    fig.tight_layout()
    figures["trace"] = fig
    return figures
