"""Fit one model several ways on the same data and tabulate the methods side by side.

Nothing here is model-specific: a model declares its held-out split and score (the HeldOut capability), its
identifiable quantities (Invariants: the first non-scalar one is compared between methods) and any extra report
figures (``objective_attrs``). Each method checks its own capability before it starts; compare checks them all
first, so a missing one is reported before any fit runs.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from inference.results import InferenceResult, ess, mcse_mean, rhat, sampler_diagnostic_figures
from inference.workflows.plots import save_figure, use_agg
from models._io import write_text
from models.protocol import (CAVI, EM, SVI, ExactInference, Gibbs, HeldOut, Invariants, LogJoint, MessagePassing, Model,
                             PyroModel, StochasticVI, require)

__all__ = ["compare", "Comparison", "DEFAULT_SETTINGS", "REFERENCE_ORDER", "reference_warning", "pick_reference",
           "sampler_convergence"]

# The exactness order used to pick the reference method: exact, then asymptotically exact samplers.
REFERENCE_ORDER = ("exact", "gibbs", "nuts", "cavi", "svi", "stochastic", "bp", "em")

DEFAULT_SETTINGS: dict[str, dict[str, Any]] = {
    "cavi": {"num_iters": 200},
    "stochastic": {"num_iters": 300},
    "gibbs": {"num_samples": 1000, "warmup": 500, "num_chains": 4},
    "svi": {"num_iters": 1500, "lr": 0.05},
    "nuts": {"num_samples": 200, "warmup": 200, "num_chains": 2, "jit": True, "processes": 0},  # chains in parallel
    "em": {"num_iters": 1000, "num_restarts": 5},
    "exact": {"num_samples": 1000},
    "bp": {"num_iters": 200},
}


@dataclass
class Comparison:
    """The outcome of :func:`compare`: the table, every result, and the held-out split."""

    table: pd.DataFrame
    results: dict[str, InferenceResult]
    reference: str
    train: Any
    test: Any
    files: list[Path] = field(default_factory=list)

    def to_markdown(self) -> str:
        return _markdown(self.table)


def _markdown(df: pd.DataFrame) -> str:
    cols = list(df.columns)
    fmt = lambda v: (f"{v:.6g}" if isinstance(v, (float, np.floating)) else str(v))  # noqa: E731
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(fmt(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join(lines)


def _invariant_name(model: Any) -> str:
    return next(k for k, v in model.invariant_dims.items() if len(v) > 0)


def _is_sampler(res: InferenceResult) -> bool:
    """Draws from a Markov chain (not from a q, not independent exact draws, not a point estimate) with at least
    two draws per chain."""
    return res.variational is None and not res.attrs.get("point_estimate") and not res.attrs.get(
        "independent_draws") and res.posterior[next(iter(res.posterior))].shape[1] > 1


# The capabilities each method needs (checked before any fit starts).
NEEDS = {"cavi": (CAVI,), "gibbs": (Gibbs, LogJoint), "svi": (SVI, PyroModel), "nuts": (PyroModel,),
         "em": (EM, LogJoint), "exact": (ExactInference,), "bp": (MessagePassing,), "stochastic": (StochasticVI,)}


def compare(model: Any, data: Any, *, methods: list[str] | tuple[str, ...] = ("cavi", "gibbs", "svi", "nuts", "em"),
            seed: int = 0, test_fraction: float = 0.1, settings: dict[str, dict[str, Any]] | None = None,
            out: str | os.PathLike | None = None, progress: bool = True, overwrite: bool = False) -> Comparison:
    """Fit ``model`` by each method on the same training split and compare them.

    Args:
        methods: names from inference.METHODS.
        seed: seeds the split and every method.
        test_fraction: share of the data held out (for counts: binomial thinning of every cell).
        settings: per-method keyword overrides of DEFAULT_SETTINGS.
        out: folder for table.md, table.csv, traces.png, agreement.png and <method>.nc (written
            atomically) and manifest.json (the configuration and the files of the run); None writes nothing. A folder
            holding a run of another configuration is refused before any work unless ``overwrite``; the files of
            an earlier run that this one does not write again are removed.

    Returns:
        Comparison. Table columns: method, objective (its name), value, per-observation held-out score,
        wall time, CPU time (this process's, or the chain processes' for NUTS in processes), for samplers the
        minimum bulk ESS of the compared quantity and seconds per effective sample, and the agreement of posterior mean invariant quantities with the reference method
        (exact inference, else the best-converged sampler: pick_reference): relative RMS difference and correlation.
    """
    from inference import METHODS

    unknown = [m for m in methods if m not in METHODS]
    if unknown or not methods:
        raise ValueError(f"unknown method(s) {unknown or methods}; choose from {sorted(METHODS)}")
    require(model, Model, Invariants, HeldOut, method="compare")
    for name in methods:
        require(model, *NEEDS[name], method=f"compare ({name})")
    data = model.prepare(data)
    if out is not None:
        from inference.workflows.sweep import claim_run_folder, run_config

        config = run_config("compare", model=model, data=data, methods=list(methods), seed=seed,
                            test_fraction=test_fraction, settings=settings or {})
        previous = claim_run_folder(Path(out), config, overwrite)
    train, test = model.split(data, test_fraction, torch.Generator().manual_seed(seed))
    kws = {}
    for name in methods:
        kws[name] = dict(DEFAULT_SETTINGS.get(name, {}))
        kws[name].update((settings or {}).get(name, {}))
    cpu: dict[str, float] = {}

    def run(name: str) -> InferenceResult:
        start = time.process_time()
        res = METHODS[name](model, train, seed=seed, progress=progress, **kws[name])
        cpu[name] = res.attrs.get("cpu_seconds", time.process_time() - start)
        return res

    results = {name: run(name) for name in methods}
    inv = _invariant_name(model)
    # R-hat and ESS once per sampler (ArviZ's are seconds on thousands of draws of hundreds of quantities)
    convergence = {name: sampler_convergence(res, inv) for name, res in results.items() if _is_sampler(res)}
    reference = pick_reference(results, inv, convergence)
    ref_draws = results[reference].posterior[inv]
    ref_mean, ref_se, ref_exact = _mean_se(model, train, results[reference], inv)
    ref_sd = ref_draws.std((0, 1))
    rows = []
    for name, res in results.items():
        row = {"method": name, "objective": res.attrs.get("objective_name", "objective"), "value": res.objective}
        if "rescaled_elbo" in res.attrs:
            row["value / total"] = res.attrs["rescaled_elbo"]
        if name == "svi" and "elbo" in res.attrs:
            row["value"] = res.attrs["elbo"]
            row["objective"] = "elbo (closed form at final q)"
        row.update(model.heldout_score(res, test, test_fraction))
        row["wall_s"] = res.wall_time
        row["cpu_s"] = cpu[name]
        draws = res.posterior[inv]
        if _is_sampler(res):  # samplers: diagnostics on the invariant quantities
            # (a quantity constant in every chain, such as a pixel no chain ever changes, has no ESS or R-hat)
            max_rhat, min_ess = convergence[name]
            row["min_ess"] = min_ess
            row["s_per_ess"] = res.wall_time / min_ess
            row["min_ess_tail"] = float(np.nanmin(ess(draws, "tail")))
            row["max_rhat"] = max_rhat
            lj = res.sample_stats.get("log_joint")
            if lj is not None:
                row["rhat_log_joint"] = float(rhat(np.asarray(lj)))
        if "psis_khat" in res.attrs:
            row["psis_khat"] = res.attrs["psis_khat"]
        (mean, se, exact_mean), sd = _mean_se(model, train, res, inv), draws.std((0, 1))
        row[f"{inv}_rel_rms_vs_{reference}"] = float(np.sqrt(np.mean((mean - ref_mean) ** 2) / np.mean(ref_mean ** 2)))
        row[f"{inv}_max_abs_diff_vs_{reference}"] = float(np.max(np.abs(mean - ref_mean)))
        row[f"{inv}_corr_vs_{reference}"] = float(np.corrcoef(mean, ref_mean)[0, 1])
        if name != reference and not res.attrs.get("point_estimate"):  # a mode has no spread and no MC error
            if not exact_mean:  # (a method with exact means of its own approximation differs by its bias, not noise)
                den = np.sqrt(se ** 2 + ref_se ** 2)
                with np.errstate(divide="ignore", invalid="ignore"):  # no error and no difference: z = 0
                    z = np.where(den > 0, (mean - ref_mean) / den, np.where(mean == ref_mean, 0.0, np.inf))
                row[f"max_abs_z_vs_{reference}"] = float(np.max(np.abs(z)))  # in Monte Carlo standard errors
            varies = ref_sd > 0  # (quantities the reference never varies have no ratio)
            row[f"sd_ratio_median_vs_{reference}"] = float(np.median(sd[varies] / ref_sd[varies])) \
                if varies.any() else float("nan")
        rows.append(row)
    table = pd.DataFrame(rows)
    comp = Comparison(table, results, reference, train, test)
    if out is not None:
        from inference.workflows.sweep import finish_run_folder

        comp.files = _write(comp, Path(out), model, inv)
        comp.files.append(finish_run_folder(Path(out), config, comp.files, previous))
    return comp


def _mean_se(model: Any, data: Any, res: InferenceResult, inv: str) -> tuple[np.ndarray, np.ndarray, bool]:
    """The posterior means of the invariant quantity under ``res``, their Monte Carlo standard errors, and whether
    they are exact: from the model's ``invariant_means`` (optional hook: exact means from what a result stores, e.g.
    the marginals of exact inference, mean field or BP) where it gives them, else from the draws."""
    exact = model.invariant_means(data, res) if hasattr(model, "invariant_means") else None
    if exact is not None and inv in exact:
        mean = np.asarray(exact[inv], dtype=np.float64)
        return mean, np.zeros_like(mean), True
    draws = res.posterior[inv]
    return draws.mean((0, 1)), _mcse(res, draws), False


def _mcse(res: InferenceResult, draws: np.ndarray) -> np.ndarray:
    """Monte Carlo standard error of posterior means: ArviZ's for chains, sd / sqrt(S) for independent q draws."""
    if _is_sampler(res):
        return np.asarray(mcse_mean(draws))
    return draws.std((0, 1)) / np.sqrt(draws.shape[0] * draws.shape[1])


def _write(comp: Comparison, out: Path, model: Any, inv: str) -> list[Path]:
    use_agg()
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    files = [write_text(out / "table.md", f"# {model.name}: method comparison ({time.strftime('%Y-%m-%d')})\n\n"
                        f"Reference method for agreement: {comp.reference}.\n\n{comp.to_markdown()}\n"),
             write_text(out / "table.csv", comp.table.to_csv(index=False))]
    fig, ax = plt.subplots(figsize=(8, 4.5))  # every method's objective against wall time, on one axis
    values = []
    for i, (name, res) in enumerate(comp.results.items()):
        color = f"C{i}"  # one colour per method (its chains share it)
        obj, sec = np.asarray(res.trace["objective"]), np.asarray(res.trace.get("seconds", []))
        if res.variational is not None:
            # the exact ELBO where the method has one (SVI's -loss is a noisy estimate of another bound)
            y = np.asarray(res.trace.get("elbo", obj))
            ok = np.isfinite(y) & (sec > 0)
            ax.plot(sec[ok], y[ok], marker="." if name == "svi" else None, ms=3, color=color, label=f"{name}: ELBO")
            values.append(y[ok])
        else:
            if obj.ndim == 1:
                obj, sec = obj[None], (sec[None] if sec.ndim == 1 and len(sec) == len(obj) else sec)
            if sec.ndim != 2:  # per-draw objective without timings: spread the chain time evenly
                per_chain = np.asarray(res.attrs.get("chain_seconds", [res.wall_time] * obj.shape[0]))
                sec = per_chain[:, None] * (np.arange(1, obj.shape[1] + 1) / obj.shape[1])
            for c in range(obj.shape[0]):
                what = "log joint at the iterate (EM: rises to the mode)" if res.attrs.get("point_estimate") else "log joint"
                ax.plot(sec[c], obj[c], lw=0.6, alpha=0.6, color=color, label=f"{name}: {what}" if c == 0 else None)
            values.append(obj[:, obj.shape[1] // 4:].ravel())
    ax.set(xlabel="wall time (s, log scale)", ylabel="objective", xscale="log",
           title="ELBO (VI, a lower bound on log p(y)) and log joint at the draws (samplers)")
    if values:
        allv = np.concatenate(values)
        lo, hi = np.quantile(allv, 0.02), np.max(allv)
        pad = 0.05 * (hi - lo) + 1e-9
        ax.set_ylim(lo - pad, hi + pad)
    if ax.lines:
        ax.legend(fontsize=7)
    files.append(save_figure(fig, out / "traces.png"))
    plt.close(fig)
    ref = comp.results[comp.reference].posterior[inv].mean((0, 1))
    fig, ax = plt.subplots(figsize=(5, 5))
    for name, res in comp.results.items():
        if name != comp.reference:
            ax.scatter(ref, res.posterior[inv].mean((0, 1)), s=6, alpha=0.6, label=name)
    lim = [float(ref.min()), float(ref.max())]
    ax.plot(lim, lim, "k--", lw=0.8)
    ax.set(xlabel=f"posterior mean {inv} ({comp.reference})", ylabel=f"posterior mean {inv}",
           title="agreement with the reference method")
    if len(comp.results) > 1:
        ax.legend()
    files.append(save_figure(fig, out / "agreement.png"))
    plt.close(fig)
    ref_sd = comp.results[comp.reference].posterior[inv].std((0, 1))
    others = [n for n in comp.results if n != comp.reference and not comp.results[n].attrs.get("point_estimate")]
    if others:  # posterior sd ratios: VI under-dispersion shows as ratios below 1
        fig, ax = plt.subplots(figsize=(6, 4))
        varies = ref_sd > 0
        ratios = [np.clip(comp.results[n].posterior[inv].std((0, 1))[varies] / ref_sd[varies], 1e-6, 1e6)
                  for n in others]  # (clipped for the log axis: 0 where a method never varies)
        ax.boxplot(ratios, tick_labels=others)
        ax.axhline(1.0, color="k", lw=0.8, ls="--")
        ax.set(yscale="log", ylabel=f"posterior sd / sd under {comp.reference}", title=f"posterior sd ratios of {inv}")
        files.append(save_figure(fig, out / "sd_ratio.png"))
        plt.close(fig)
    for name, res in comp.results.items():
        if _is_sampler(res) and res.posterior[inv].shape[0] > 1:
            for kind, fig in sampler_diagnostic_figures(res, inv).items():
                files.append(save_figure(fig, out / f"{name}_{kind}.png", close=True))
    files += _model_figures(comp, model, out)
    files.append(write_text(out / "report.md", _report(comp, model, inv, [f.name for f in files])))
    for name, res in comp.results.items():
        files.append(res.save(out / f"{name}.nc"))
    return files


def _model_figures(comp: Comparison, model: Any, out: Path) -> list[Path]:
    """The figures the model's registry entry adds to the report (ModelSpec.compare_figures), if any."""
    import importlib

    from models import registry

    try:
        spec = registry.get(model.name)
    except registry.UnknownModel:
        return []
    if spec.compare_figures is None:
        return []
    module, _, function = spec.compare_figures.partition(":")
    return list(getattr(importlib.import_module(module), function)(comp, model, out))


CONVERGED_RHAT, CONVERGED_ESS = 1.01, 100.0


def sampler_convergence(res: InferenceResult, inv: str) -> tuple[float, float]:
    """(largest split R-hat, smallest bulk ESS) of a sampler's draws of the invariant quantities ``inv``."""
    draws = res.posterior[inv]
    return float(np.nanmax(rhat(draws))), float(np.nanmin(ess(draws)))


def pick_reference(results: dict[str, InferenceResult], inv: str,
                   convergence: dict[str, tuple[float, float]] | None = None) -> str:
    """The reference for agreement: exact inference when it ran; else the first sampler of REFERENCE_ORDER that has
    converged on ``inv`` (R-hat <= 1.01 and bulk ESS >= 100); else the best-converged sampler (smallest R-hat; its
    row is flagged by :func:`reference_warning`); else the first method of REFERENCE_ORDER that ran.
    convergence: the samplers' :func:`sampler_convergence`, when already computed."""
    if "exact" in results:
        return "exact"
    samplers = [m for m in REFERENCE_ORDER if m in results and _is_sampler(results[m])]
    diagnostics = {m: (convergence or {}).get(m) or sampler_convergence(results[m], inv) for m in samplers}
    for m in samplers:
        r, e = diagnostics[m]
        if r <= CONVERGED_RHAT and e >= CONVERGED_ESS:
            return m
    if samplers:
        return min(samplers, key=lambda m: (np.nan_to_num(diagnostics[m][0], nan=np.inf), -diagnostics[m][1]))
    return next(m for m in REFERENCE_ORDER if m in results)


def reference_warning(comp: Comparison) -> list[str]:
    """A warning when the reference is a sampler whose diagnostics say it has not converged."""
    row = comp.table.set_index("method").loc[comp.reference]
    rhat_lj, max_rhat, min_ess = (float(row.get(k, np.nan)) for k in ("rhat_log_joint", "max_rhat", "min_ess"))
    if not (max(np.nan_to_num(rhat_lj), np.nan_to_num(max_rhat)) > 1.01 or min_ess < 100):
        return []
    return [f"**Warning: the reference {comp.reference} has not converged** (R-hat of the log joint {rhat_lj:.3f}, "
            f"largest R-hat {max_rhat:.3f}, smallest bulk ESS {min_ess:.0f}; it is the best-converged sampler run): "
            "the agreement columns measure the distance from an unconverged chain, not from the posterior. Run it "
            "longer or with more chains.", ""]


def _report(comp: Comparison, model: Any, inv: str, pictures: list[str]) -> str:
    """report.md: the table, what each column means, and the plots."""
    lines = [f"# {model.name}: every method on one split ({time.strftime('%Y-%m-%d')})", "",
             f"Data: {comp.results[comp.reference].attrs.get('data', '')}; reference method for agreement: "
             f"{comp.reference} (the most exact method run).", "", *reference_warning(comp),
             comp.to_markdown(), "",
             "- wall_s, cpu_s: the method's wall-clock seconds and CPU seconds (cpu_s counts every core it used; for "
             "NUTS with chains in processes, the chain processes' sampling).",
             "- value: the constant-inclusive objective (closed-form ELBO for CAVI/SVI; for samplers the log joint "
             "of the last draw; for EM the log joint at the posterior mode it found, with allocations summed out). "
             "Held-out scores are per observation on one fixed split (EM: plug-in predictive at the mode).",
             f"- Diagnostics use the identifiable quantities `{inv}` (never raw factors or labels): split R-hat "
             "(want < 1.01), bulk and tail ESS, seconds per effective sample.",
             "- psis_khat: Pareto k-hat of p/q importance weights (Vehtari et al.): < 0.5 good, 0.5-0.7 usable, "
             "> 0.7 the q is unreliable for importance sampling (typical of under-dispersed mean-field VI).",
             f"- max_abs_z_vs_{comp.reference}: largest difference of posterior means in combined Monte Carlo "
             "standard errors; sd_ratio: median posterior sd relative to the reference (< 1: under-dispersed).", ""]
    for pic in pictures:
        if pic.endswith(".png"):
            lines += [f"![{pic[:-4]}]({pic})", ""]
    return "\n".join(lines)
