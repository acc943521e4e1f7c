"""The skeleton shared by the Bayesian Gaussian mixtures (spherical Normal-Gamma and full Normal-Wishart): CAVI,
the ELBO, Gibbs, EM, the Pyro checks, label-invariant summaries and the held-out score, written once. A subclass
supplies the component maths; the equations it implements are numbered in its own module.

Shared structure (n rows, K components, weights w_uj: hard assignments for Gibbs, responsibilities r_uj for CAVI):
    pi ~ Dir(alpha0 1_K),  (mu_j, P_j) ~ conjugate prior,  z_u ~ Cat(pi),  x_u | z_u = j ~ N(mu_j, P_j^-1)
    posterior given w:   alpha_j = alpha0 + sum_u w_uj,  (mu_j, P_j) | w ~ the conjugate update       (posterior_params)
    CAVI:  log rho_uj = E[log pi_j] + E_q[log N(x_u | mu_j, P_j^-1)],  r_uj = rho_uj / sum_l rho_ul
    ELBO = sum_u sum_j r_uj (log rho_uj - log r_uj) - KL(q(pi) || p(pi)) - sum_j KL(q(mu_j, P_j) || p(mu_j, P_j)),
           = sum_u logsumexp_j log rho_uj - KLs at the optimal r
    Gibbs: z | pi, mu, P;  pi | z ~ Dir(alpha);  (mu, P) | z from the conjugate posterior
    EM:    r from the current (pi, mu, P); pi = Dirichlet mode, (mu, P) = the conjugate posterior's joint mode

Subclass hooks: posterior_params(data, w) -> family, component_log_lik(data, mu, P) (..., n, K),
expected_component_log_lik(data, q) (n, K), component_kl(data, q) (K,), sample_components(q, generator),
component_mode(q, d), check_mode(d), component_conditional(q) -> Conditional, and the Pyro ``model``.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import numpy as np
import torch

from models.conjugate import dirichlet_expected_log, dirichlet_kl, dirichlet_mode, sample_dirichlet
from models.data import MixtureData
from models.protocol import Conditional, warm_gibbs_state

__all__ = ["BayesMixture", "CaviState", "check_positive"]

_BATCH_MAX = 5_000_000  # draws x n x K evaluated at once by log_joint


class CaviState(NamedTuple):
    """CAVI state: q's parameters (the model's family) and the log responsibilities log r (n, K) they came from
    (normalised logits)."""

    params: Any
    log_resp: torch.Tensor


def check_positive(model: Any, names: tuple[str, ...]) -> None:
    if isinstance(model.K, bool) or not isinstance(model.K, (int, np.integer)) or model.K < 1:
        raise ValueError(f"K must be an integer >= 1, got {model.K!r}")
    for f in names:
        v = getattr(model, f)
        if not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
            raise ValueError(f"{f} must be a positive finite number, got {v!r}")


class BayesMixture:
    """Shared CAVI / ELBO / Gibbs / EM skeleton of a conjugate Bayesian Gaussian mixture (see the module docstring).
    Subclasses are frozen dataclasses with K and alpha0 and name their precision site in ``precision_site``."""

    precision_site = "tau"
    invariant_dims = {"mu_sorted": ("sorted_entry",), "log_joint": ()}
    cavi_blocks = ("params", "z")
    cavi_options = {}  # no model-specific CAVI options
    svi_elbo = "enum"
    max_plate_nesting = 1

    @property
    def sites(self) -> tuple[str, ...]:
        return ("pi", "mu", self.precision_site)

    # ------------------------------------------------------------------------------------------------
    # Simulation (SBC and Geweke)

    def simulate(self, size: tuple[int, int], generator: torch.Generator):
        """A prior draw as a Gibbs state and ``size`` = (n, d) complete points."""
        params, data = self.sample(*size, generator)
        return self.GibbsState(params["pi"], params["mu"], params[self.precision_site]), data

    # ------------------------------------------------------------------------------------------------
    # The log joint with z summed out, batched over draws

    def log_joint(self, data: MixtureData, pi: torch.Tensor, mu: torch.Tensor, *precision: torch.Tensor,
                  **named: torch.Tensor) -> torch.Tensor:
        """log p(pi, mu, P, X) with z summed out; the precision P positionally or by its site name (tau, Lambda).
        Batched over leading dims of pi (..., K), in chunks of draws so that memory stays O(chunk n K)."""
        prec = precision[0] if precision else named[self.precision_site]
        lead = pi.shape[:-1]
        if not len(lead):
            return self._log_joint(data, pi, mu, prec)
        step = max(1, _BATCH_MAX // (data.shape[0] * self.K)) if self.batched_log_joint else 1
        flat = [t.reshape(-1, *t.shape[len(lead):]) for t in (pi, mu, prec)]
        if step == 1:
            return torch.stack([self._log_joint(data, *v) for v in zip(*flat)]).reshape(lead)
        return torch.cat([self._log_joint(data, *(t[i:i + step] for t in flat))
                          for i in range(0, len(flat[0]), step)]).reshape(lead)

    def _log_joint(self, data: MixtureData, pi: torch.Tensor, mu: torch.Tensor, prec: torch.Tensor) -> torch.Tensor:
        lp = self.prior_log_density(data, pi, mu, prec)
        return lp + torch.logsumexp(torch.log(pi)[..., None, :] + self.component_log_lik(data, mu, prec), -1).sum(-1)

    # ------------------------------------------------------------------------------------------------
    # CAVI

    def _log_rho(self, data: MixtureData, q: Any) -> torch.Tensor:
        """(n, K) log rho_uj = E[log pi_j] + E_q[log N(x_u | mu_j, P_j^-1)]."""
        return dirichlet_expected_log(q.alpha)[None] + self.expected_component_log_lik(data, q)

    def _kl(self, data: MixtureData, q: Any) -> torch.Tensor:
        """KL(q(pi) || p(pi)) + sum_j KL(q(mu_j, P_j) || p(mu_j, P_j))."""
        return dirichlet_kl(q.alpha, torch.full_like(q.alpha, self.alpha0)) + self.component_kl(data, q).sum()

    def elbo(self, data: MixtureData, q: Any, log_resp: torch.Tensor | None = None) -> torch.Tensor:
        """The full ELBO at q(pi) q(mu, P) = q and q(z_u) = softmax(log_resp_u) (None: the optimal q(z)). The
        responsibilities enter as logits (normalised here), so the ELBO is a function of unconstrained tensors."""
        log_rho = self._log_rho(data, q)
        if log_resp is None:
            z_term = torch.logsumexp(log_rho, 1).sum()
        else:
            log_r = torch.log_softmax(log_resp, 1)
            z_term = (torch.exp(log_r) * (log_rho - log_r)).sum()
        return z_term - self._kl(data, q)

    def cavi_state_elbo(self, data: MixtureData, state: CaviState) -> torch.Tensor:
        return self.elbo(data, state.params, state.log_resp)

    def cavi_init(self, data: MixtureData, generator: torch.Generator) -> CaviState:
        """Responsibilities from K distinct random rows as centres (soft assignment at the data scale), then
        q(pi), q(mu, P) from them."""
        n = data.shape[0]
        centres = data.X[torch.randperm(n, generator=generator)[: self.K]]
        O = data.mask.to(data.dtype)
        dist2 = (O * data.X ** 2).sum(1)[:, None] - 2 * data.X @ centres.T + O @ (centres ** 2).T
        log_resp = torch.log_softmax(-dist2 / dist2.mean().clamp_min(1e-12), 1)
        return CaviState(self.posterior_params(data, torch.exp(log_resp)), log_resp)

    def cavi_initial_elbo(self, data: MixtureData, state: CaviState) -> torch.Tensor:
        return self.cavi_state_elbo(data, state)

    def cavi_block(self, data: MixtureData, state: CaviState, block: str) -> CaviState:
        """"params": q(pi), q(mu, P) from the responsibilities (the conjugate updates); "z": the responsibilities."""
        if block == "params":
            return CaviState(self.posterior_params(data, torch.exp(state.log_resp)), state.log_resp)
        if block == "z":
            return CaviState(state.params, torch.log_softmax(self._log_rho(data, state.params), 1))
        raise ValueError(f"block must be one of {self.cavi_blocks}, got {block!r}")

    def cavi_update(self, data: MixtureData, state: CaviState) -> tuple[CaviState, torch.Tensor]:
        """The "params" block, then the "z" block; the ELBO at the optimal responsibilities costs one logsumexp."""
        params = self.posterior_params(data, torch.exp(state.log_resp))
        log_rho = self._log_rho(data, params)
        lse = torch.logsumexp(log_rho, 1, keepdim=True)
        return CaviState(params, log_rho - lse), lse.sum() - self._kl(data, params)

    def objective_attrs(self, data: MixtureData, elbo: float) -> dict[str, float]:
        return {"elbo": float(elbo), "elbo_per_row": float(elbo) / data.shape[0]}

    def local_q(self, data: MixtureData, q: Any) -> Conditional:
        """q(z_u) = Cat(r_u) at the optimal responsibilities for q."""
        dist_z = torch.distributions.Categorical(logits=self._log_rho(data, q))
        return Conditional.of("z", dist_z)

    def augmented_model(self, data: MixtureData) -> None:
        """The Pyro model with z as an ordinary latent site (conditioning on z turns enumeration off)."""
        self.model(data)

    # ------------------------------------------------------------------------------------------------
    # SVI: the guide in the CAVI family, z enumerated out in the model (TraceEnum_ELBO)

    def guide_init(self, data: MixtureData, generator: torch.Generator) -> dict[str, torch.Tensor]:
        return self.cavi_init(data, generator).params.to_guide()

    # ------------------------------------------------------------------------------------------------
    # Gibbs

    def gibbs_init(self, data: MixtureData, generator: torch.Generator):
        """The posterior mean of CAVI's initial q."""
        p = self.cavi_init(data, generator).params.mean()
        return self.GibbsState(p["pi"], p["mu"], p[self.precision_site])

    def _z_probs(self, data: MixtureData, state) -> torch.Tensor:
        """(n, K) p(z_u = j | pi, mu, P, x_u)."""
        return self.classification_probs(data, state.pi, state.mu, state[2])

    def classification_probs(self, data: MixtureData, pi: torch.Tensor, mu: torch.Tensor, prec: torch.Tensor
                             ) -> torch.Tensor:
        """(..., n, K) p(z_u = j | pi, mu, P, x_u) for draws pi (..., K), mu (..., K, d), P (..., K, ...)."""
        return torch.softmax(torch.log(pi)[..., None, :] + self.component_log_lik(data, mu, prec), -1)

    def gibbs_sweep(self, data: MixtureData, state, generator: torch.Generator):
        """z | pi, mu, P; pi | z ~ Dir(alpha); (mu, P) | z from the conjugate posterior."""
        z = torch.multinomial(self._z_probs(data, state), 1, generator=generator)[:, 0]
        p = self.posterior_params(data, torch.nn.functional.one_hot(z, self.K).to(data.dtype))
        pi = sample_dirichlet(p.alpha, generator)
        return self.GibbsState(pi, *self.sample_components(p, generator))

    # ------------------------------------------------------------------------------------------------
    # EM for the posterior mode

    def em_init(self, data: MixtureData, generator: torch.Generator):
        """Start at the posterior mean of CAVI's initial q (soft assignment to K random rows). A posterior mode
        exists only if no prior density is unbounded: alpha0 >= 1 and the component condition of ``check_mode``."""
        if self.alpha0 < 1:
            raise ValueError(f"EM finds the posterior mode, which does not exist when alpha0 < 1 (the Dirichlet density "
                             f"is unbounded at the simplex boundary); got alpha0={self.alpha0}: use CAVI or Gibbs")
        self.check_mode(data.shape[1])
        return self.gibbs_init(data, generator)

    def em_update(self, data: MixtureData, state):
        """E-step r_uj ∝ pi_j p(x_u | mu_j, P_j); M-step: the joint mode of the conjugate posterior of (pi, mu, P)
        with the responsibilities as weights: the Dirichlet mode and ``component_mode``. That is the argmax of the
        expected complete log posterior, so log p(pi, mu, P, X) never decreases."""
        p = self.posterior_params(data, self._z_probs(data, state))
        return self.GibbsState(dirichlet_mode(p.alpha), *self.component_mode(p, data.shape[1]))

    # ------------------------------------------------------------------------------------------------
    # The conditionals as distributions, for checking them against the Pyro model

    def conditional_model(self, data: MixtureData) -> None:
        self.model(data)

    def conditional_values(self, data: MixtureData, generator: torch.Generator) -> dict[str, torch.Tensor]:
        """(pi, mu, P) a few Gibbs sweeps from the start and z drawn from its conditional."""
        s = warm_gibbs_state(self, data, generator)
        z = torch.multinomial(self._z_probs(data, s), 1, generator=generator)[:, 0]
        return {"pi": s.pi, "mu": s.mu, self.precision_site: s[2], "z": z}

    def complete_conditionals(self, data: MixtureData, values: dict[str, torch.Tensor]) -> dict[str, Conditional]:
        """z | rest (Categorical per row), pi | z (Dirichlet), (mu, P) | z (the conjugate posterior)."""
        state = self.GibbsState(values["pi"], values["mu"], values[self.precision_site])
        p = self.posterior_params(data, torch.nn.functional.one_hot(values["z"], self.K).to(data.dtype))
        return {"z": Conditional.of("z", torch.distributions.Categorical(probs=self._z_probs(data, state))),
                "pi": Conditional.of("pi", torch.distributions.Dirichlet(p.alpha)),
                "components": self.component_conditional(p)}

    # ------------------------------------------------------------------------------------------------
    # Label-invariant quantities, held-out score

    def invariants(self, data: MixtureData, pi: torch.Tensor, mu: torch.Tensor, **precision: torch.Tensor):
        """The means sorted by their first coordinate, flattened (..., K d), and the log joint (...)."""
        prec = precision[self.precision_site]
        order = torch.argsort(mu[..., 0], dim=-1)
        mu_sorted = torch.gather(mu, -2, order[..., None].expand(mu.shape))
        return {"mu_sorted": mu_sorted.reshape(*mu.shape[:-2], -1), "log_joint": self.log_joint(data, pi, mu, prec)}

    def coords(self, data: MixtureData) -> dict[str, np.ndarray]:
        return {"component": np.arange(self.K), "coord": np.arange(data.shape[1]),
                "sorted_entry": np.array([f"{j}:{i}" for j in range(self.K) for i in range(data.shape[1])])}

    def split(self, data: MixtureData, test_fraction: float, generator: torch.Generator):
        """Hold out a random ``test_fraction`` of the rows."""
        n = data.shape[0]
        perm = torch.randperm(n, generator=generator)
        k = max(1, int(round(test_fraction * n)))
        return data.rows(perm[k:]), data.rows(perm[:k])

    def pointwise_log_lik(self, data: MixtureData, pi: torch.Tensor, mu: torch.Tensor, **rest) -> dict[str, torch.Tensor]:
        """log p(x_u | pi, mu, P) per row, z summed out: {"x": (..., n)} for draws with leading dims."""
        prec = torch.as_tensor(rest[self.precision_site])
        pi, mu = torch.as_tensor(pi), torch.as_tensor(mu)
        lead = pi.shape[:-1]
        flat = [t.reshape((-1,) + t.shape[len(lead):]) for t in (pi, mu, prec)]
        ll = torch.stack([torch.logsumexp(torch.log(p)[None] + self.component_log_lik(data, m, t), 1)
                          for p, m, t in zip(*flat)])
        return {"x": ll.reshape(lead + (data.shape[0],))}

    def heldout_score(self, result: Any, test: MixtureData, test_fraction: float) -> dict[str, float]:
        """Log predictive density per held-out row, log mean_s p(x_u | pi_s, mu_s, P_s) over all draws
        (label-invariant)."""
        draws = {k: torch.as_tensor(np.asarray(result.posterior[k])).flatten(0, 1)
                 for k in ("pi", "mu", self.precision_site)}
        ll = self.pointwise_log_lik(test, **draws)["x"]  # (S, n_test)
        lpd = torch.logsumexp(ll, 0) - math.log(ll.shape[0])
        return {"heldout_lpd_per_row": float(lpd.mean())}
