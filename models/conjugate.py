"""The shared conjugate maths, written once: Gamma, Poisson, multinomial, Dirichlet, Normal-Gamma, Wishart and
Normal-Wishart updates, expectations, KL divergences and draws, and drawing a Gaussian from its precision.

Conventions: Gamma is (shape, rate) everywhere, as in torch.distributions: Ga(x; a, b) = b^a x^(a-1) e^(-b x) / Gamma(a).
A Wishart W(W, nu) has scale matrix W (E[Lambda] = nu W). Every draw takes an explicit torch.Generator. A block
update is written once; Gibbs draws from it, CAVI feeds it expected statistics, EM takes its mode.
"""

from __future__ import annotations

import math

import numpy as np

import torch

__all__ = ["LOG_2PI", "gamma_posterior", "gamma_expectations", "digamma_lgamma", "gamma_kl", "gamma_log_pdf",
           "gamma_log_pdf_sum", "poisson_log_pmf", "sample_gamma", "sample_gamma_draws", "gig_log_pdf", "sample_gig",
           "sample_categorical",
           "sample_multinomial",
           "multinomial_log_pmf", "sample_dirichlet", "dirichlet_kl",
           "dirichlet_expected_log", "dirichlet_mode", "normal_gamma_kl", "mv_digamma", "wishart_expected_logdet",
           "wishart_kl", "sample_wishart", "wishart_log_pdf_isotropic", "normal_wishart_update",
           "normal_wishart_kl", "normal_wishart_mode", "sample_gaussian_precision"]

LOG_2PI = math.log(2 * math.pi)


# ---------------------------------------------------------------------------------------------------
# Gamma and Poisson


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


def digamma_lgamma(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(digamma(x), lgamma(x)) of Gamma shapes x > 0, any shape: in one compiled pass for float64 on the CPU
    (models._kernels), else torch.digamma and torch.lgamma."""
    from models import _kernels

    if _kernels.usable(x):
        dg, lg = _kernels.digamma_lgamma(x.numpy())
        return torch.from_numpy(dg), torch.from_numpy(lg)
    return torch.digamma(x), torch.lgamma(x)


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
    # the normaliser on the parameters' shape first: draws t (S, ...) of one q pay for S lgammas less
    return (shape * torch.log(rate) - torch.lgamma(shape)) + torch.xlogy(shape - 1, t) - rate * t  # 0 log 0 = 0 at shape 1


def gamma_log_pdf_sum(t: torch.Tensor, shape: float | torch.Tensor, rate: float | torch.Tensor) -> torch.Tensor:
    """sum_ik log Ga(t_ik; shape_ik, rate_ik) over the last two dimensions of draws t (..., n, K), shape and rate
    broadcastable to (n, K) -> (...): gamma_log_pdf(t, shape, rate).sum((-2, -1)) with one temporary the size of t
    (log t) instead of four, the terms in t and log t summed as matrix-vector products. (100 draws of LastFM's q are
    12 million numbers a temporary: its fresh pages cost more than the arithmetic.)"""
    n, K = t.shape[-2:]
    shape = torch.as_tensor(shape, dtype=t.dtype, device=t.device)
    rate = torch.as_tensor(rate, dtype=t.dtype, device=t.device)
    normaliser = (shape * torch.log(rate) - torch.lgamma(shape)).expand(n, K).sum()  # (lgamma on the parameters)
    flat = t.reshape(-1, n * K)
    weight = (shape - 1).expand(n, K).reshape(-1)
    log_term = torch.log(flat) @ weight
    if not bool(torch.isfinite(log_term).all()):  # a draw at 0 (or below): xlogy's 0 log 0 = 0 where shape = 1
        log_term = torch.xlogy(weight, flat).sum(-1)
    return (normaliser + log_term - flat @ rate.expand(n, K).reshape(-1)).reshape(t.shape[:-2])


def poisson_log_pmf(x: torch.Tensor, rate: torch.Tensor) -> torch.Tensor:
    """Elementwise log Po(x; rate) = x log(rate) - rate - log(x!), with 0 log 0 = 0."""
    return torch.xlogy(x, rate) - rate - torch.lgamma(x + 1)


def sample_gamma(shape: torch.Tensor, rate: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """One draw per element from Ga(shape, rate), from an explicit generator."""
    return torch._standard_gamma(shape, generator=generator) / rate


# draws per piece of sample_gamma_draws: below this, one thread draws them all
_DRAWS_PER_PIECE = 1 << 20
_MAX_PIECES = 8


def sample_gamma_draws(shape: torch.Tensor, rate: torch.Tensor, num_samples: int,
                       generator: torch.Generator) -> torch.Tensor:
    """num_samples draws (S, ...) from Ga(shape, rate), shape and rate (...).

    Many draws (variational draws of a large q: 100 x 3,000 x 40 for LastFM) are drawn in up to 8 pieces along S,
    each piece from its own generator seeded from ``generator``, in threads (the sampler releases the GIL). The
    pieces and their seeds depend on S and the size of q only, never on the number of threads, so the draws are
    the same on every machine."""
    pieces = min(num_samples, _MAX_PIECES, num_samples * shape.numel() // _DRAWS_PER_PIECE)
    if pieces <= 1:
        return sample_gamma(shape.expand(num_samples, *shape.shape), rate, generator)
    seeds = torch.randint(0, 2 ** 62, (pieces,), generator=generator).tolist()
    bounds = [num_samples * i // pieces for i in range(pieces + 1)]

    def piece(i: int) -> torch.Tensor:
        g = torch.Generator(device=shape.device).manual_seed(seeds[i])
        return sample_gamma(shape.expand(bounds[i + 1] - bounds[i], *shape.shape), rate, g)

    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=max(1, min(pieces, torch.get_num_threads()))) as pool:
        return torch.cat(list(pool.map(piece, range(pieces))))


# ---------------------------------------------------------------------------------------------------
# Categorical and multinomial


def gig_log_pdf(x: torch.Tensor, p: float | torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """log GIG(x; p, a, b), the generalised inverse Gaussian with density
    (a / b)^(p/2) / (2 K_p(sqrt(a b))) x^(p - 1) exp(-(a x + b / x) / 2), x > 0 (K_p: modified Bessel, second kind)."""
    from scipy.special import kve

    a_np, b_np = a.detach().cpu().numpy(), b.detach().cpu().numpy()
    w = np.sqrt(a_np * b_np)
    log_bessel = torch.as_tensor(np.log(kve(float(p), w)) - w, dtype=x.dtype, device=x.device)  # log K_p(w)
    return (p / 2 * (torch.log(a) - torch.log(b)) - math.log(2) - log_bessel + (p - 1) * torch.log(x)
            - (a * x + b / x) / 2)


def sample_gig(p: float, a: torch.Tensor, b: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Draws of GIG(p, a, b) (density in :func:`gig_log_pdf`), one per entry of a and b (same shape). Uses scipy's
    geninvgauss(p, sqrt(a b)) scaled by sqrt(b / a), seeded from ``generator``."""
    from scipy.stats import geninvgauss

    seed = int(torch.randint(0, 2 ** 62, (1,), generator=generator))
    a_np, b_np = a.detach().cpu().numpy(), b.detach().cpu().numpy()
    x = geninvgauss.rvs(float(p), np.sqrt(a_np * b_np), size=a_np.shape, random_state=np.random.default_rng(seed))
    return torch.as_tensor(x * np.sqrt(b_np / a_np), dtype=a.dtype, device=a.device)


def sample_categorical(logits: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """One draw per row of unnormalised log-probabilities (..., K) -> (...) int64, by the Gumbel-max trick:
    argmax_k (logits_k + G_k) with G_k = -log(-log U_k) standard Gumbel."""
    u = torch.rand(logits.shape, generator=generator, dtype=logits.dtype, device=logits.device)
    return torch.argmax(logits - torch.log(-torch.log(u.clamp_min(torch.finfo(logits.dtype).tiny))), -1)


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


def multinomial_log_pmf(z: torch.Tensor, total: torch.Tensor, probs: torch.Tensor) -> torch.Tensor:
    """log Mult(z; total, probs) per row: z (..., R, K) counts, total (..., R), probs (..., R, K) normalised."""
    return torch.lgamma(total + 1) - torch.lgamma(z + 1).sum(-1) + torch.xlogy(z, probs).sum(-1)


# ---------------------------------------------------------------------------------------------------
# Dirichlet


def sample_dirichlet(alpha: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """pi ~ Dir(alpha) along the last dimension, as normalised Gamma(alpha, 1) draws."""
    g = sample_gamma(alpha, torch.ones_like(alpha), generator)
    return g / g.sum(-1, keepdim=True)


def dirichlet_kl(q_alpha: torch.Tensor, p_alpha: torch.Tensor) -> torch.Tensor:
    """KL(Dir(q_alpha) || Dir(p_alpha)) over the last dimension."""
    from torch.distributions import Dirichlet, kl_divergence

    return kl_divergence(Dirichlet(q_alpha), Dirichlet(p_alpha))


def dirichlet_expected_log(alpha: torch.Tensor) -> torch.Tensor:
    """E[log pi_j] = digamma(alpha_j) - digamma(sum_l alpha_l)."""
    return torch.digamma(alpha) - torch.digamma(alpha.sum(-1, keepdim=True))


def dirichlet_mode(alpha: torch.Tensor) -> torch.Tensor:
    """Mode (alpha_j - 1) / sum_l (alpha_l - 1) of Dir(alpha) (all alpha_j >= 1)."""
    return (alpha - 1) / (alpha - 1).sum(-1, keepdim=True)


# ---------------------------------------------------------------------------------------------------
# Normal-Gamma: tau ~ Ga(a, b), mu_i | tau ~ N(m_i, 1 / (beta_i tau)) for i = 1..d (one precision per component)


def normal_gamma_kl(m: torch.Tensor, beta: torch.Tensor, a: torch.Tensor, b: torch.Tensor, m0: float, beta0: float,
                    a0: float, b0: float) -> torch.Tensor:
    """KL(NG(m, beta, a, b) || NG(m0, beta0, a0, b0)) per component: m, beta (K, d); a, b (K,) -> (K,).

    KL = KL(Ga(a, b) || Ga(a0, b0)) + sum_i (beta0 / beta_i - 1 - log(beta0 / beta_i) + beta0 (a / b) (m_i - m0)^2) / 2.
    """
    ratio = beta0 / beta
    kl_mu = 0.5 * (ratio - 1 - torch.log(ratio) + beta0 * (a / b)[..., None] * (m - m0) ** 2).sum(-1)
    return gamma_kl(a, b, a0, b0) + kl_mu


# ---------------------------------------------------------------------------------------------------
# Wishart and Normal-Wishart: Lambda ~ W(W, nu), mu | Lambda ~ N(m, (beta Lambda)^-1)


def mv_digamma(x: torch.Tensor, D: int) -> torch.Tensor:
    """psi_D(x) = sum_{i=1..D} digamma(x + (1 - i) / 2)."""
    return sum(torch.digamma(x + (1 - i) / 2) for i in range(1, D + 1))


def wishart_expected_logdet(W: torch.Tensor, nu: torch.Tensor) -> torch.Tensor:
    """E[log|Lambda|] = psi_D(nu / 2) + D log 2 + log|W| for Lambda ~ W(W, nu). W (..., D, D), nu (...)."""
    D = W.shape[-1]
    return mv_digamma(nu / 2, D) + D * math.log(2) + torch.logdet(W)


def wishart_kl(Wq: torch.Tensor, nuq: torch.Tensor, Wp: torch.Tensor, nup: torch.Tensor) -> torch.Tensor:
    """KL(W(Wq, nuq) || W(Wp, nup)):
    (nuq - nup)/2 psi_D(nuq/2) - nuq D/2 + nuq/2 tr(Wp^-1 Wq) - nup/2 log|Wp^-1 Wq| + log Gamma_D(nup/2) - log Gamma_D(nuq/2)."""
    D = Wq.shape[-1]
    Wp_inv_Wq = torch.linalg.solve(Wp, Wq)
    return ((nuq - nup) / 2 * mv_digamma(nuq / 2, D) - nuq * D / 2
            + nuq / 2 * Wp_inv_Wq.diagonal(dim1=-2, dim2=-1).sum(-1) - nup / 2 * torch.logdet(Wp_inv_Wq)
            + torch.mvlgamma(nup / 2, D) - torch.mvlgamma(nuq / 2, D))


def sample_wishart(W: torch.Tensor, nu: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Lambda ~ W(W, nu) by the Bartlett decomposition, from an explicit generator. W (K, D, D), nu (K,)."""
    K, D = W.shape[0], W.shape[-1]
    L = torch.linalg.cholesky(W)
    A = torch.zeros(K, D, D, dtype=W.dtype)
    dof = nu[:, None] - torch.arange(D, dtype=W.dtype)[None, :]  # nu - i + 1 for i = 1..D
    A.diagonal(dim1=-2, dim2=-1).copy_(torch.sqrt(2 * sample_gamma(dof / 2, torch.ones_like(dof), generator)))
    tril = torch.tril(torch.ones(D, D, dtype=torch.bool), -1)
    A[:, tril] = torch.randn(K, int(tril.sum()), generator=generator, dtype=W.dtype)
    LA = L @ A
    return LA @ LA.transpose(-1, -2)


def wishart_log_pdf_isotropic(Lam: torch.Tensor, w0: float, nu: float) -> torch.Tensor:
    """log W(Lam; w0 I, nu) with every constant, for a scale matrix w0 I. Lam (K, K) -> ()."""
    K = Lam.shape[-1]
    logdet = torch.logdet(Lam)
    return ((nu - K - 1) / 2 * logdet - torch.diagonal(Lam).sum() / (2 * w0) - nu * K / 2 * math.log(2)
            - nu * K / 2 * math.log(w0) - torch.mvlgamma(torch.tensor(nu / 2, dtype=Lam.dtype), K))


def normal_wishart_update(N: torch.Tensor | float, xbar: torch.Tensor, scatter: torch.Tensor, m0: torch.Tensor,
                          beta0: float, W0_inv: torch.Tensor, nu0: float):
    """Normal-Wishart posterior from N points with mean xbar and scatter sum (x - xbar)(x - xbar)^T (Bishop 10.58-10.63):
        beta = beta0 + N,  m = (beta0 m0 + N xbar) / beta,  nu = nu0 + N,
        W^-1 = W0^-1 + scatter + beta0 N / (beta0 + N) (xbar - m0)(xbar - m0)^T.
    Batched over leading dims: N (...), xbar (..., D), scatter (..., D, D). Returns (m, beta, W, nu), W symmetrised."""
    N = torch.as_tensor(N, dtype=xbar.dtype)
    dm = xbar - m0
    W_inv = W0_inv + scatter + (beta0 * N / (beta0 + N))[..., None, None] * (dm[..., :, None] * dm[..., None, :])
    beta = beta0 + N
    m = (beta0 * m0 + N[..., None] * xbar) / beta[..., None]
    W = torch.linalg.inv(W_inv)
    return m, beta, 0.5 * (W + W.transpose(-1, -2)), nu0 + N


def normal_wishart_kl(m: torch.Tensor, beta: torch.Tensor, W: torch.Tensor, nu: torch.Tensor, m0: torch.Tensor,
                      beta0: float, W0: torch.Tensor, nu0: torch.Tensor) -> torch.Tensor:
    """KL(NW(m, beta, W, nu) || NW(m0, beta0, W0, nu0)) = KL(W(W, nu) || W(W0, nu0))
    + (D beta0 / beta - D + D log(beta / beta0) + beta0 nu (m - m0)^T W (m - m0)) / 2. Batched over leading dims."""
    D = m.shape[-1]
    dm = m - m0
    quad = torch.einsum("...i,...ij,...j->...", dm, W, dm)
    kl_mu = 0.5 * (D * beta0 / beta - D + D * torch.log(beta / beta0) + beta0 * nu * quad)
    return wishart_kl(W, nu, W0, nu0) + kl_mu


def normal_wishart_mode(m: torch.Tensor, W: torch.Tensor, nu: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Joint mode of NW(m, beta, W, nu): the density is |Lambda|^((nu - D)/2) exp(-tr(W^-1 Lambda)/2
    - beta (mu - m)^T Lambda (mu - m)/2) up to constants, so mu = m and Lambda = (nu - D) W (needs nu > D)."""
    D = W.shape[-1]
    return m, torch.as_tensor(nu - D, dtype=W.dtype)[..., None, None] * W


# ---------------------------------------------------------------------------------------------------
# Gaussians parameterised by their precision


def sample_gaussian_precision(precision: torch.Tensor, generator: torch.Generator, *, mean: torch.Tensor | None = None,
                              linear: torch.Tensor | None = None) -> torch.Tensor:
    """Draws x ~ N(mu, P^-1) with P = L L^T: x = mu + L^-T eps, eps ~ N(0, I).

    Give the mean ``mean`` (..., D), or the linear term ``linear`` b (..., D) with mu = P^-1 b (one Cholesky serves
    both), or neither for mu = 0. precision (..., D, D); the draws have the broadcast batch shape of precision and
    mean, one standard normal per entry."""
    L = torch.linalg.cholesky(precision)
    if linear is not None:
        mean = torch.cholesky_solve(linear[..., None], L)[..., 0]
    shape = precision.shape[:-1] if mean is None else torch.broadcast_shapes(precision.shape[:-1], mean.shape)
    eps = torch.randn(shape, generator=generator, dtype=precision.dtype)
    x = torch.linalg.solve_triangular(L.transpose(-1, -2), eps[..., None], upper=True)[..., 0]
    return x if mean is None else mean + x
