"""Ladder rung 1: conjugate updates and helpers against hand-worked values and torch.distributions."""

import math

import pytest
import torch
import torch.distributions as td

from models.conjugate import (gamma_expectations, gamma_kl, gamma_log_pdf, gamma_log_pdf_sum, gamma_posterior,
                              poisson_log_pmf, sample_gamma, sample_multinomial)


def test_gamma_posterior_hand_worked():
    # prior Ga(2, 3); counts 1 + 4 = 5 over exposures 0.5 + 1.5 = 2  ->  Ga(7, 5)
    shape, rate = gamma_posterior(2.0, 3.0, torch.tensor(5.0), torch.tensor(2.0))
    assert float(shape) == 7.0 and float(rate) == 5.0


def test_gamma_expectations_hand_worked():
    mean, mean_log = gamma_expectations(torch.tensor(1.0, dtype=torch.float64), torch.tensor(2.0, dtype=torch.float64))
    assert float(mean) == 0.5
    # digamma(1) = -Euler-Mascheroni
    assert float(mean_log) == pytest.approx(-0.5772156649015329 - math.log(2.0), abs=1e-14)


@pytest.mark.parametrize("qa,qb,pa,pb", [(1.0, 1.0, 1.0, 1.0), (2.5, 0.3, 0.1, 1.0), (0.2, 7.0, 3.0, 0.5)])
def test_gamma_kl_matches_torch(qa, qb, pa, pb):
    q = [torch.tensor(v, dtype=torch.float64) for v in (qa, qb)]
    ref = td.kl_divergence(td.Gamma(*q), td.Gamma(torch.tensor(pa, dtype=torch.float64),
                                                   torch.tensor(pb, dtype=torch.float64)))
    torch.testing.assert_close(gamma_kl(q[0], q[1], pa, pb), ref, rtol=1e-12, atol=1e-12)
    # the digamma-reusing form gives the same value
    torch.testing.assert_close(gamma_kl(q[0], q[1], pa, pb, gamma_expectations(*q)[1]), ref, rtol=1e-12, atol=1e-12)


def test_log_densities_match_torch():
    t = torch.tensor([0.3, 2.0, 5.0], dtype=torch.float64)
    torch.testing.assert_close(gamma_log_pdf(t, 1.7, 0.4), td.Gamma(torch.tensor(1.7, dtype=torch.float64),
                                                                   torch.tensor(0.4, dtype=torch.float64)).log_prob(t))
    x = torch.tensor([0.0, 3.0, 10.0], dtype=torch.float64)
    torch.testing.assert_close(poisson_log_pmf(x, t), td.Poisson(t).log_prob(x))


def test_gamma_log_pdf_sum_equals_the_elementwise_sum():
    """The draws' log density by matrix-vector products equals the summed elementwise densities of torch.distributions:
    per-element and scalar parameters, a leading batch of draws, and a draw at 0 where the shape is 1 (0 log 0 = 0)."""
    g = torch.Generator().manual_seed(3)
    shape = 0.5 + 2 * torch.rand(6, 4, generator=g, dtype=torch.float64)
    rate = 0.2 + torch.rand(6, 4, generator=g, dtype=torch.float64)
    t = td.Gamma(shape, rate).sample((5, 3))  # (5, 3, 6, 4)
    want = td.Gamma(shape, rate).log_prob(t).sum((-2, -1))
    torch.testing.assert_close(gamma_log_pdf_sum(t, shape, rate), want, rtol=1e-13, atol=1e-10)
    want = td.Gamma(torch.tensor(1.3, dtype=torch.float64), torch.tensor(0.7, dtype=torch.float64)).log_prob(t)
    torch.testing.assert_close(gamma_log_pdf_sum(t, 1.3, 0.7), want.sum((-2, -1)), rtol=1e-13, atol=1e-10)
    shape[0, 0], t[0, 0, 0, 0] = 1.0, 0.0
    want = gamma_log_pdf(t, shape, rate).sum((-2, -1))
    assert torch.isfinite(want).all()
    torch.testing.assert_close(gamma_log_pdf_sum(t, shape, rate), want, rtol=1e-13, atol=1e-10)


def test_multinomial_sampler_sums_and_means():
    g = torch.Generator().manual_seed(0)
    total = torch.tensor([0.0, 1.0, 50.0, 1000.0], dtype=torch.float64)
    probs = torch.tensor([[1, 1, 1], [0.2, 0.0, 0.8], [1, 2, 7], [0.5, 0.25, 0.25]], dtype=torch.float64)
    draws = torch.stack([sample_multinomial(total, probs, g) for _ in range(4000)])
    assert torch.all(draws.sum(-1) == total)
    assert torch.all(draws[:, 1, 1] == 0)  # a zero-probability category is never drawn
    expected = total[:, None] * probs / probs.sum(-1, keepdim=True)
    var = total[:, None] * (probs / probs.sum(-1, keepdim=True)) * (1 - probs / probs.sum(-1, keepdim=True))
    se = (var / 4000).sqrt().clamp_min(1e-12)
    assert torch.all((draws.mean(0) - expected).abs() <= 4.5 * se + 1e-12)


def test_gamma_draws_in_pieces_are_reproducible_whatever_the_threads_and_have_the_right_moments():
    """sample_gamma_draws splits many draws into pieces with their own seeds: the same draws with 1 or 2 threads,
    shape (S, ...), and per-element means and variances of Ga(a, b) (a / b, a / b^2) within 5 standard errors."""
    from models.conjugate import _DRAWS_PER_PIECE, sample_gamma_draws

    shape = torch.tensor([[0.3, 2.0], [7.5, 40.0]], dtype=torch.float64).repeat(64, 1)   # (128, 2)
    rate = torch.tensor([[0.5, 3.0]], dtype=torch.float64)                               # broadcast over rows
    S = 2 * _DRAWS_PER_PIECE // shape.numel() + 1   # at least two pieces
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = sample_gamma_draws(shape, rate, S, torch.Generator().manual_seed(3))
        torch.set_num_threads(2)
        two = sample_gamma_draws(shape, rate, S, torch.Generator().manual_seed(3))
    finally:
        torch.set_num_threads(threads)
    assert one.shape == (S, 128, 2) and torch.equal(one, two)
    assert not torch.equal(one[: S // 2], one[S - S // 2:])   # the pieces are not copies of one another
    flat = one.reshape(-1, 4)                                   # the 4 distinct (shape, rate) pairs, pooled
    a = shape[:2].reshape(-1)
    b = rate.expand(2, 2).reshape(-1)
    n = flat.shape[0]
    assert torch.all((flat.mean(0) - a / b).abs() < 5 * (a.sqrt() / b) / math.sqrt(n))
    var_se = (a / b ** 2) * math.sqrt(2 / n) * torch.sqrt(1 + 3 / a)  # sd of a sample variance of a Gamma
    assert torch.all((flat.var(0) - a / b ** 2).abs() < 5 * var_se)
    # few draws: one generator, as sample_gamma
    few = sample_gamma_draws(shape, rate, 3, torch.Generator().manual_seed(3))
    ref = sample_gamma(shape.expand(3, -1, -1), rate, torch.Generator().manual_seed(3))
    assert torch.equal(few, ref)
