"""Pure conjugate updates and Gamma/multinomial helpers shared by EM, CAVI and Gibbs.

Gamma is (shape, rate) everywhere, as in torch.distributions: Ga(x; a, b) = b^a x^(a-1) e^(-b x) / Gamma(a).
A block update is written once; Gibbs draws from it, CAVI feeds it expected statistics.
"""

from __future__ import annotations

import torch

__all__ = ["gamma_posterior", "gamma_expectations", "gamma_kl", "gamma_log_pdf", "poisson_log_pmf",
           "sample_gamma", "sample_multinomial"]


def gamma_posterior(prior_shape: float | torch.Tensor, prior_rate: float | torch.Tensor,
                    counts: torch.Tensor, exposure: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Gamma-Poisson conjugate update: a Ga(a, b) prior times Poisson terms with these sufficient stats.

    For y_j ~ Po(t * e_j), j = 1..J, and t ~ Ga(a, b): t | y ~ Ga(a + sum_j y_j, b + sum_j e_j).

    Args:
        counts: (...,) sum of the Poisson counts (or their expectations under q, for CAVI).
        exposure: (...,) sum of the multipliers e_j (or their expectations), broadcastable to counts.

    Returns:
        (shape, rate), each broadcast to a common shape.
    """
    shape = prior_shape + counts
    rate = prior_rate + exposure
    return torch.broadcast_tensors(shape, rate)


def gamma_expectations(shape: torch.Tensor, rate: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """E[t] = a / b and E[log t] = digamma(a) - log(b) for t ~ Ga(a, b)."""
    return shape / rate, torch.digamma(shape) - torch.log(rate)


def gamma_kl(q_shape: torch.Tensor, q_rate: torch.Tensor, p_shape: float | torch.Tensor,
             p_rate: float | torch.Tensor, q_mean_log: torch.Tensor | None = None) -> torch.Tensor:
    """Elementwise KL(Ga(q_shape, q_rate) || Ga(p_shape, p_rate)).

    KL = (a_q - a_p) digamma(a_q) - lgamma(a_q) + lgamma(a_p) + a_p (log b_q - log b_p) + a_q (b_p - b_q) / b_q.
    ``q_mean_log`` = digamma(a_q) - log(b_q), when already computed, saves the digamma.
    """
    p_shape = torch.as_tensor(p_shape, dtype=q_shape.dtype, device=q_shape.device)
    p_rate = torch.as_tensor(p_rate, dtype=q_shape.dtype, device=q_shape.device)
    log_q_rate = torch.log(q_rate)
    digamma_q = torch.digamma(q_shape) if q_mean_log is None else q_mean_log + log_q_rate
    return ((q_shape - p_shape) * digamma_q - torch.lgamma(q_shape) + torch.lgamma(p_shape)
            + p_shape * (log_q_rate - torch.log(p_rate)) + q_shape * (p_rate - q_rate) / q_rate)


def gamma_log_pdf(t: torch.Tensor, shape: float | torch.Tensor, rate: float | torch.Tensor) -> torch.Tensor:
    """Elementwise log Ga(t; shape, rate), every constant included."""
    shape = torch.as_tensor(shape, dtype=t.dtype, device=t.device)
    rate = torch.as_tensor(rate, dtype=t.dtype, device=t.device)
    return shape * torch.log(rate) + torch.xlogy(shape - 1, t) - rate * t - torch.lgamma(shape)  # 0 log 0 = 0 at shape 1


def poisson_log_pmf(x: torch.Tensor, rate: torch.Tensor) -> torch.Tensor:
    """Elementwise log Po(x; rate) = x log(rate) - rate - log(x!), with 0 log 0 = 0."""
    return torch.xlogy(x, rate) - rate - torch.lgamma(x + 1)


def sample_gamma(shape: torch.Tensor, rate: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """One draw per element from Ga(shape, rate), from an explicit generator."""
    return torch._standard_gamma(shape, generator=generator) / rate


def sample_multinomial(total: torch.Tensor, probs: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Draw z_i ~ Mult(total_i, probs_i) for every row i at once, by sequential binomial splitting.

    z_ik | z_i1..z_i(k-1) ~ Bin(total_i - sum_{j<k} z_ij, p_ik / sum_{j>=k} p_ij): K vectorised binomial
    draws, O(rows x K) work, any torch device.

    Args:
        total: (..., R) non-negative integer totals (float dtype), broadcastable to probs' leading dims.
        probs: (..., R, K) non-negative weights; each row is normalised here.

    Returns:
        (..., R, K) integer draws (float dtype), each row summing to its total.
    """
    probs = probs / probs.sum(-1, keepdim=True)
    tail = probs.flip(-1).cumsum(-1).flip(-1)  # tail[..., k] = sum_{j >= k} p_j, stable against cancellation
    cond = (probs / tail).nan_to_num(0.0).clamp(0.0, 1.0).movedim(-1, 0).contiguous()  # (K, ..., R) contiguous rows
    remaining = total.expand(probs.shape[:-1]).contiguous()
    z = []
    for k in range(probs.shape[-1] - 1):
        z.append(torch.binomial(remaining, cond[k], generator=generator))
        remaining = remaining - z[-1]
    z.append(remaining)
    return torch.stack(z, -1)
