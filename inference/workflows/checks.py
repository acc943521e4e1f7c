"""check_model: the derivation checks as a user feature (in the spirit of scikit-learn's check_estimator).

For any model that implements the protocol (models.protocol), each check its capabilities allow runs and reports
its number, the threshold and a pass/fail:

    conditional     Conditionals + PyroModel: every closed-form complete conditional against the Pyro model's log
                    joint: log p(x_B, rest) - log p_closed(x_B | rest) must be the same for every x_B drawn from it.
    cavi-sweep      CAVI: one sweep (cavi_update) equals its blocks applied in turn (cavi_block), and the ELBO it
                    returns equals the ELBO of the state it returns.
    cavi-block      CAVI: after each block update, the gradient (autograd) of the ELBO with respect to the
                    parameters that block changed vanishes: each update is a stationary point of the ELBO.
    elbo-mc         CAVI or SVI + PyroModel: the closed-form ELBO against a Monte Carlo estimate E_q[log p - log q]
                    with log p from the Pyro model (the augmented model, and q's local factor, when the ELBO covers
                    local allocations); within 4 standard errors.
    guide           SVI: the Pyro guide at q's parameters (family.to_guide) has q's log density (family.log_prob).
    em-stationary   EM + PyroModel: at EM's fixed point the gradient of the log joint in unconstrained coordinates
                    (the supports of the Pyro model's sites) vanishes; for discrete sites (ICM), no change of one
                    site raises the Pyro model's log joint (a local mode).
    geweke          Gibbs + Simulates: a short Geweke joint-distribution test of the Gibbs sweep (max |z|).

    report = check_model(PoissonMF(K=2), data)     # or data=None: a problem drawn from the prior (registered models)
    print(report); report.passed; report.raise_if_failed()
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Iterable

import numpy as np
import torch

from models.protocol import (CAVI, EM, SVI, Augmented, Conditionals, Gibbs, LogJoint, Model, PyroModel, PyroSites,
                             Simulates, missing_hooks, require)

__all__ = ["check_model", "CheckReport", "Check", "CHECKS"]

CHECKS = ("conditional", "cavi-sweep", "cavi-block", "elbo-mc", "guide", "em-stationary", "geweke")


@dataclass
class Check:
    """One check: what was checked (``name`` on ``target``), its statistic, the threshold it must stay below, and
    whether it passed."""

    name: str
    target: str
    statistic: float
    threshold: float
    passed: bool
    detail: str = ""


@dataclass
class CheckReport:
    """Every check run on one model, and the checks skipped with the reason."""

    model: str
    checks: list[Check] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return bool(self.checks) and all(c.passed for c in self.checks)

    @property
    def failures(self) -> list[Check]:
        return [c for c in self.checks if not c.passed]

    def table(self):
        import pandas as pd

        return pd.DataFrame([c.__dict__ for c in self.checks])

    def __str__(self) -> str:
        lines = [f"check_model({self.model}): {'all checks passed' if self.passed else f'{len(self.failures)} FAILED'}",
                 f"  {'check':<14} {'target':<22} {'statistic':>11} {'threshold':>10}  result"]
        for c in self.checks:
            lines.append(f"  {c.name:<14} {c.target:<22} {c.statistic:>11.3g} {c.threshold:>10.3g}  "
                         f"{'pass' if c.passed else 'FAIL'}{'  ' + c.detail if c.detail else ''}")
        for name, why in self.skipped.items():
            lines.append(f"  {name:<14} skipped: {why}")
        return "\n".join(lines)

    def raise_if_failed(self) -> None:
        if not self.passed:
            raise AssertionError(str(self))


def check_model(model: Any, data: Any = None, *, seed: int = 0, checks: Iterable[str] = CHECKS,
                mc_samples: int = 1000, tol: float = 1e-7, em_iters: int = 3000, geweke_size: tuple | None = None,
                geweke_draws: tuple[int, int] = (1000, 2000)) -> CheckReport:
    """Run the derivation checks the model's capabilities allow (see the module docstring).

    Args:
        model: any model implementing models.protocol.Model.
        data: the data to check on (small: the checks run samplers and Monte Carlo); None draws a problem from the
            prior with the registry's calibration size (registered models with the Simulates capability).
        checks: a subset of CHECKS.
        mc_samples: draws of the Monte Carlo ELBO.
        tol: threshold of the gradient checks, relative to max(1, |objective|).
        em_iters: most EM sweeps before the EM check gives up as not converged (reported as skipped).
        geweke_size: problem size for Geweke (the model's ``simulate`` argument); default the registry's.
        geweke_draws: (marginal-conditional, successive-conditional) draws of the Geweke test.

    Returns:
        CheckReport; ``report.passed`` is True when every check that ran passed.
    """
    require(model, Model, method="check_model")
    unknown = set(checks) - set(CHECKS)
    if unknown:
        raise ValueError(f"unknown check(s) {sorted(unknown)}; choose from {', '.join(CHECKS)}")
    checks = [c for c in CHECKS if c in set(checks)]
    report = CheckReport(model.name)
    size = geweke_size or _calibration_size(model)
    if data is None:
        if not isinstance(model, Simulates) or size is None:
            raise ValueError("check_model: give data (the model cannot simulate a problem of a known size)")
        data = model.simulate(size, torch.Generator().manual_seed(seed))[1]
    data = model.prepare(data)
    g = torch.Generator().manual_seed(seed)
    runners = {"conditional": (_conditionals, (Conditionals, PyroModel)),
               "cavi-sweep": (_cavi_sweep, (CAVI,)), "cavi-block": (_cavi_blocks, (CAVI,)),
               "elbo-mc": (_elbo_mc, (PyroModel,)), "guide": (_guide, (SVI, PyroModel)),
               "em-stationary": (_em_stationary, (EM, LogJoint, PyroModel)),
               "geweke": (_geweke, (Gibbs, Simulates))}
    for name in checks:
        fn, needs = runners[name]
        missing = [p.__name__ for p in needs if missing_hooks(model, p)]
        if name == "elbo-mc" and not (isinstance(model, CAVI) or isinstance(model, SVI)):
            missing.append("CAVI or SVI")
        if missing:
            report.skipped[name] = f"the model has no {', '.join(missing)}"
            continue
        try:
            fn(model, data, g, report, tol=tol, mc_samples=mc_samples, em_iters=em_iters, size=size,
               geweke_draws=geweke_draws)
        except _Skip as why:
            report.skipped[name] = str(why)
    return report


class _Skip(Exception):
    """A check that cannot conclude (for example EM that did not converge)."""


def _calibration_size(model: Any) -> tuple | None:
    from models import registry

    try:
        spec = registry.get(model.name)
    except ValueError:
        return None
    return spec.calibration.size if spec.calibration is not None else None


# ---------------------------------------------------------------------------------------------------
# Helpers: the Pyro log joint at given values, and the float tensors of a (nested) state


def pyro_log_joint(fn: Any, data: Any, values: dict[str, torch.Tensor]) -> torch.Tensor:
    """log p(values, data) from a Pyro model, every latent site conditioned (an unconditioned one is an error:
    the values do not cover the model)."""
    from pyro import poutine
    from pyro.poutine.util import site_is_subsample

    tr = poutine.trace(poutine.condition(fn, data=values)).get_trace(data)
    free = [n for n, s in tr.nodes.items() if s["type"] == "sample" and not s["is_observed"] and not site_is_subsample(s)]
    if free:
        raise ValueError(f"the values do not cover the Pyro model's latent sites {free}")
    return tr.log_prob_sum()


def to_pyro(model: Any, data: Any, values: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The values under the Pyro model's site names (PyroSites models name them differently, one site per pixel)."""
    return model.to_pyro_sites(data, values) if isinstance(model, PyroSites) else values


def from_pyro(model: Any, data: Any, values: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return model.from_pyro_sites(data, values) if isinstance(model, PyroSites) else values


def _leaves(state: Any, prefix: str = "") -> dict[str, torch.Tensor]:
    """{path: tensor} of the floating-point tensors of a NamedTuple state (nested NamedTuples allowed)."""
    out = {}
    for name, v in state._asdict().items():
        path = f"{prefix}{name}"
        if isinstance(v, torch.Tensor) and v.is_floating_point():
            out[path] = v
        elif hasattr(v, "_asdict"):
            out.update(_leaves(v, path + "."))
    return out


def _replace(state: Any, values: dict[str, torch.Tensor], prefix: str = "") -> Any:
    changes = {}
    for name, v in state._asdict().items():
        path = f"{prefix}{name}"
        if path in values:
            changes[name] = values[path]
        elif hasattr(v, "_asdict"):
            changes[name] = _replace(v, values, path + ".")
    return state._replace(**changes)


def _symmetric_part(g: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """The gradient along symmetric perturbations for symmetric matrices (stacks of them), else g."""
    if x.dim() >= 2 and x.shape[-1] == x.shape[-2] and x.shape[-1] > 1 and torch.allclose(x, x.transpose(-1, -2)):
        return 0.5 * (g + g.transpose(-1, -2))
    return g


# ---------------------------------------------------------------------------------------------------
# The checks


def _conditionals(model, data, g, report, *, tol, **_) -> None:
    values = model.conditional_values(data, g)
    for block, cond in model.complete_conditionals(data, values).items():
        diffs = []
        for _ in range(6):
            new = cond.sample(g)
            with torch.no_grad():
                diffs.append(float(pyro_log_joint(model.conditional_model, data, {**values, **new}) - cond.log_prob(new)))
        d = np.array(diffs)
        stat = float(d.max() - d.min()) / max(1.0, float(np.abs(d).max()))
        report.checks.append(Check("conditional", block, stat, 1e-8, bool(stat < 1e-8),
                                   "log p - log conditional not constant" if stat >= 1e-8 else ""))


def _cavi_start(model, data, g, sweeps: int = 3):
    state = model.cavi_init(data, g)
    for _ in range(sweeps):
        state, _ = model.cavi_update(data, state)
    return state


def _cavi_sweep(model, data, g, report, **_) -> None:
    state = _cavi_start(model, data, g)
    swept, elbo = model.cavi_update(data, state)
    blocked = state
    for block in model.cavi_blocks:
        blocked = model.cavi_block(data, blocked, block)
    a, b = _leaves(swept), _leaves(blocked)
    worst, where = 0.0, ""
    for k in a:
        if b.get(k) is not None:
            scale = max(1.0, float(a[k].abs().max()))
            diff = float((a[k] - b[k]).abs().max()) / scale
            if diff > worst:
                worst, where = diff, k
    report.checks.append(Check("cavi-sweep", "sweep = blocks", worst, 1e-10, worst < 1e-10,
                               f"largest difference in {where}" if worst >= 1e-10 else ""))
    state_elbo = float(model.cavi_state_elbo(data, swept))
    stat = abs(float(elbo) - state_elbo) / max(1.0, abs(state_elbo))
    report.checks.append(Check("cavi-sweep", "returned ELBO", stat, 1e-10, stat < 1e-10,
                               f"sweep says {float(elbo):.10g}, state has {state_elbo:.10g}" if stat >= 1e-10 else ""))


def _changed(before: dict[str, torch.Tensor], after: dict[str, torch.Tensor]) -> list[str]:
    return [k for k, v in after.items() if before.get(k) is None or before[k].shape != v.shape
            or not torch.equal(before[k], v)]


def _changed_mask(before: torch.Tensor | None, after: torch.Tensor) -> torch.Tensor:
    """1 where a block update changed an entry (everywhere when the shape changed), else 0."""
    if before is None or before.shape != after.shape:
        return torch.ones_like(after)
    return (before != after).to(after.dtype)


def _cavi_blocks(model, data, g, report, *, tol, **_) -> None:
    state = _cavi_start(model, data, g)
    for block in model.cavi_blocks:
        new = model.cavi_block(data, state, block)
        before, after = _leaves(state), _leaves(new)
        changed = _changed(before, after)
        if not changed:  # already at the block's fixed point to the last bit (peaked posteriors): from the start
            state = model.cavi_init(data, g)
            new = model.cavi_block(data, state, block)
            before, after = _leaves(state), _leaves(new)
            changed = _changed(before, after)
        leaves = {k: v.detach().clone().requires_grad_(k in changed) for k, v in after.items()}
        with torch.enable_grad():
            elbo = model.cavi_state_elbo(data, _replace(new, leaves))
            targets = [k for k in changed if leaves[k].requires_grad]
            grads = torch.autograd.grad(elbo, [leaves[k] for k in targets], allow_unused=True) if targets else []
        # only the entries the block changed must be stationary (a block of pixels leaves the others as they were)
        used = {k: _symmetric_part(gr, after[k]) * _changed_mask(before.get(k), after[k])
                for k, gr in zip(targets, grads) if gr is not None}
        if not used:
            report.checks.append(Check("cavi-block", block, float("nan"), tol, False,
                                       "the block changed no parameter of the ELBO"))
        else:
            worst = max(used, key=lambda k: float(used[k].abs().max()))
            stat = float(used[worst].abs().max()) / max(1.0, abs(float(elbo.detach())))
            report.checks.append(Check("cavi-block", block, stat, tol, stat < tol,
                                       f"d ELBO / d {worst} does not vanish" if stat >= tol else ""))
        state = new


def _elbo_mc(model, data, g, report, *, mc_samples, **_) -> None:
    if isinstance(model, CAVI):
        q = _cavi_start(model, data, g, sweeps=2).params
    else:
        q = model.family.from_guide(model.guide_init(data, g))
    closed = float(model.elbo(data, q))
    augmented = isinstance(model, Augmented)
    fn = model.augmented_model if augmented else model.model
    local = model.local_q(data, q) if augmented else None
    with torch.no_grad():
        draws = q.sample(mc_samples, g)
        log_q = q.log_prob(draws)
        values = []
        for s in range(mc_samples):
            v = {k: d[s] for k, d in draws.items()}
            lq = float(log_q[s])
            if local is not None:
                z = local.sample(g)
                lq += float(local.log_prob(z))
                v.update(z)
            values.append(float(pyro_log_joint(fn, data, to_pyro(model, data, v))) - lq)
    v = np.array(values)
    mean, se = v.mean(), v.std(ddof=1) / math.sqrt(len(v))
    stat = abs(closed - mean) / max(se, 1e-12 * max(1.0, abs(mean)))
    report.checks.append(Check("elbo-mc", "closed form vs MC", stat, 4.0, stat < 4.0,
                               f"closed {closed:.6g}, Monte Carlo {mean:.6g} +- {se:.2g}"))


def _guide(model, data, g, report, **_) -> None:
    from pyro import poutine
    from pyro.poutine.util import site_is_subsample

    if isinstance(model, CAVI):
        q = _cavi_start(model, data, g, sweeps=2).params
    else:
        q = model.family.from_guide(model.guide_init(data, g))
    try:
        params = q.to_guide()
    except ValueError as exc:  # the guide does not cover this configuration of the model
        raise _Skip(str(exc)) from None
    with torch.no_grad(), torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(torch.randint(2 ** 62, (1,), generator=g)))
        tr = poutine.trace(model.guide).get_trace(data, params)
        guide_lp = float(tr.log_prob_sum())
        draws = from_pyro(model, data, {n: s["value"][None] for n, s in tr.nodes.items()
                                        if s["type"] == "sample" and not site_is_subsample(s)})
        family_lp = float(q.log_prob(draws)[0])
        back = model.family.from_guide(params)
    stat = abs(guide_lp - family_lp) / max(1.0, abs(guide_lp))
    report.checks.append(Check("guide", "log q: guide vs family", stat, 1e-8, stat < 1e-8,
                               f"guide {guide_lp:.10g}, family {family_lp:.10g}" if stat >= 1e-8 else ""))
    a, b = _leaves(q), _leaves(back)
    worst = max((float((a[k] - b[k]).abs().max()) / max(1.0, float(a[k].abs().max())) for k in b if k in a),
                default=0.0)
    report.checks.append(Check("guide", "to_guide / from_guide", worst, 1e-10, worst < 1e-10))


def _unconstrain(value: torch.Tensor, support) -> tuple[torch.Tensor, Any]:
    """(u, to_constrained) for a site value in its support: log for positive, stick-breaking for the simplex,
    log-Cholesky for positive-definite matrices, identity for reals."""
    from torch.distributions import biject_to, constraints

    if support is constraints.positive_definite or isinstance(support, type(constraints.positive_definite)):
        L = torch.linalg.cholesky(value)
        u = torch.tril(L, -1) + torch.diag_embed(torch.log(torch.diagonal(L, dim1=-2, dim2=-1)))

        def to_pd(x):
            Lx = torch.tril(x, -1) + torch.diag_embed(torch.exp(torch.diagonal(x, dim1=-2, dim2=-1)))
            return Lx @ Lx.transpose(-1, -2)
        return u, to_pd
    t = biject_to(support)
    return t.inv(value), t


def _em_stationary(model, data, g, report, *, tol, em_iters, **_) -> None:
    from pyro import poutine

    state = model.em_init(data, g)
    converged, change = False, math.inf
    for _ in range(em_iters):
        new = model.em_update(data, state)
        change = max(float((a - b).abs().max()) / max(1.0, float(b.abs().max()))
                     for a, b in zip(new, state) if isinstance(a, torch.Tensor))
        state = new
        if change <= 1e-12:  # the iterate stops moving (the objective's change is only quadratic in the distance)
            converged = True
            break
    if not converged:
        raise _Skip(f"EM did not converge in {em_iters} sweeps (the iterate still moves by {change:.1e})")
    fields = state._asdict()
    sites = poutine.trace(model.model).get_trace(data).nodes
    pyro_values = to_pyro(model, data, {k: v for k, v in fields.items() if isinstance(v, torch.Tensor)})
    free = {n: s["fn"].support for n, s in sites.items() if s["type"] == "sample" and not s["is_observed"]
            and n in pyro_values}  # plates and enumerated allocations are not state fields
    discrete = {n: sites[n]["fn"] for n, support in free.items() if support.is_discrete}
    if discrete:
        _em_local_mode(model, data, pyro_values, discrete, report, tol)
    continuous = {n: support for n, support in free.items() if not support.is_discrete}
    if not continuous:
        return
    leaves, maps = {}, {}
    for n, support in continuous.items():
        u, to_c = _unconstrain(fields[n].detach(), support)
        leaves[n], maps[n] = u.clone().requires_grad_(), to_c
    with torch.enable_grad():
        values = dict(fields)
        values.update({n: maps[n](leaves[n]) for n in leaves})
        lj = model.log_joint(data, *(values[f] for f in state._fields))
        grads = torch.autograd.grad(lj, list(leaves.values()))
    worst = {n: float(gr.abs().max()) for n, gr in zip(leaves, grads)}
    site = max(worst, key=worst.get)
    stat = worst[site] / max(1.0, abs(float(lj.detach())))
    report.checks.append(Check("em-stationary", "log joint at EM's mode", stat, tol, stat < tol,
                               f"d log p / d {site} does not vanish" if stat >= tol else ""))


def _em_local_mode(model, data, values: dict, sites: dict, report, tol: float) -> None:
    """Discrete sites (ICM): no change of one site to another value of its support raises the Pyro model's log
    joint at EM's fixed point (a local mode). The statistic is the largest gain, relative to max(1, |log p|)."""
    base = float(pyro_log_joint(model.model, data, values))
    gain, where = -math.inf, ""
    for n, fn in sites.items():
        current = values[n]
        for idx in np.ndindex(*current.shape):
            for v in fn.enumerate_support(expand=False).reshape(-1).tolist():
                if current[idx] == v:
                    continue
                changed = current.clone()
                changed[idx] = v
                gain_here = float(pyro_log_joint(model.model, data, {**values, n: changed})) - base
                if gain_here > gain:
                    gain, where = gain_here, f"{n}{list(idx) if idx else ''}={v}"
    stat = max(0.0, gain) / max(1.0, abs(base))
    report.checks.append(Check("em-stationary", "no single-site gain", stat, tol, stat < tol,
                               f"setting {where} raises log p by {gain:.3g}" if stat >= tol else ""))


def _geweke(model, data, g, report, *, size, geweke_draws, **_) -> None:
    from inference.workflows.calibration import geweke

    if size is None:
        raise _Skip("no problem size: pass geweke_size (the model's simulate argument)")
    res = geweke(model, size, num_marginal=geweke_draws[0], num_successive=geweke_draws[1],
                 seed=int(torch.randint(2 ** 31, (1,), generator=g)), progress=False)
    stat = res.max_abs_z
    min_ess = float(res.table["ess"].min())
    detail = ("" if stat < 4.5 else "the sweep does not leave the posterior invariant" if min_ess >= 50 else
              f"the chain barely moved (ESS {min_ess:.0f}): a broken sweep, or one that mixes too slowly at these "
              "hyperparameters for the test (weaker potentials or priors)")
    report.checks.append(Check("geweke", f"{len(res.table)} test functions", stat, 4.5, stat < 4.5, detail))
