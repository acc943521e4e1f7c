"""Grid MRFs: exact inference (transfer matrix) against brute force written here and against Pyro's own enumeration;
mean field, loopy BP, Gibbs, SVI and ICM against exact answers and against their own equations written out here;
bad input; the command line.

Reference values come from code in this file that shares nothing with models/grid: a plain-Python enumeration of
every labelling with the potentials summed edge by edge, or Pyro's TraceEnum_ELBO on the model's Pyro program."""

import itertools
import math
import re

import numpy as np
import pytest
import torch

from inference import fit_bp, fit_cavi, fit_em, fit_exact, fit_gibbs, fit_svi
from inference.cli import main
from models.grid.images import COURSE_SMALL, add_noise, spiral
from models.grid.model import GridMRF, as_grid_data


def random_problem(H, W, K, seed=0, coupling=1.0):
    """Random node log-potentials (H, W, K) and a random symmetric edge table."""
    rng = np.random.default_rng(seed)
    phi = rng.normal(size=(H, W, K))
    A = rng.normal(size=(K, K)) * coupling
    theta = tuple(tuple(float(v) for v in row) for row in (A + A.T) / 2)
    return GridMRF(K=K, theta=theta), phi


def edges(H, W):
    return [((i, j), (i, j + 1)) for i in range(H) for j in range(W - 1)] + \
        [((i, j), (i + 1, j)) for i in range(H - 1) for j in range(W)]


def enumerate_exact(model, phi):
    """log Z, the marginals (H, W, K) and the pairwise marginals {edge: (K, K)} by summing over every labelling,
    eq. 1 written out term by term."""
    H, W, K = phi.shape
    theta = np.array(model.theta)
    E = edges(H, W)
    logs, configs = [], []
    for y in itertools.product(range(K), repeat=H * W):
        y = np.array(y).reshape(H, W)
        s = sum(phi[i, j, y[i, j]] for i in range(H) for j in range(W))
        s += sum(theta[y[a], y[b]] for a, b in E)
        logs.append(s)
        configs.append(y)
    logs = np.array(logs)
    log_Z = np.logaddexp.reduce(logs)
    w = np.exp(logs - log_Z)
    marg = np.zeros((H, W, K))
    pair = {e: np.zeros((K, K)) for e in E}
    for wt, y in zip(w, configs):
        for i in range(H):
            for j in range(W):
                marg[i, j, y[i, j]] += wt
        for a, b in E:
            pair[(a, b)][y[a], y[b]] += wt
    return log_Z, marg, pair


# ---------------------------------------------------------------------------------------------------
# Exact inference


@pytest.mark.parametrize("H,W,K", [(3, 3, 2), (2, 4, 3), (4, 2, 3), (1, 5, 2), (5, 1, 2)])
def test_transfer_matrix_and_brute_force_match_an_enumeration_written_out(H, W, K):
    model, phi = random_problem(H, W, K, seed=H * 10 + W)
    log_Z, marg, pair = enumerate_exact(model, phi)
    data = model.prepare(phi)
    out = model.exact_marginals(data, pairwise=True)
    assert abs(float(model.log_partition(data)) - log_Z) < 1e-10
    assert abs(float(out["log_Z"]) - log_Z) < 1e-10
    assert np.abs(out["marginals"].numpy() - marg).max() < 1e-10
    for (a, b), p in pair.items():
        kind = "horizontal" if a[0] == b[0] else "vertical"
        assert np.abs(out[kind][a].numpy() - p).max() < 1e-10, (kind, a)
    brute = model.brute_force(data)
    assert abs(float(brute["log_Z"]) - log_Z) < 1e-10 and np.abs(brute["marginals"].numpy() - marg).max() < 1e-10


def test_exact_answers_agree_with_pyro_enumeration_of_the_pyro_model():
    from pyro.infer import TraceEnum_ELBO

    model, phi = random_problem(3, 3, 3, seed=5)
    data = model.prepare(phi)
    elbo = TraceEnum_ELBO(max_plate_nesting=0)
    pyro_log_Z = -elbo.loss(model.model, lambda d: None, data)   # an empty guide: the loss is -log Z
    assert abs(pyro_log_Z - float(model.log_partition(data))) < 1e-10
    pyro_marg = elbo.compute_marginals(model.model, lambda d: None, data)
    ours = model.exact_marginals(data)["marginals"]
    for i, j in itertools.product(range(3), range(3)):
        assert torch.allclose(pyro_marg[f"y_{i}_{j}"].probs, ours[i, j], atol=1e-10, rtol=0)


def test_course_small_exact_values_against_the_enumeration():
    model = GridMRF.course(2)
    log_Z, marg, _ = enumerate_exact(model, 10.0 * np.eye(2)[np.array(COURSE_SMALL)])
    res = fit_exact(model, COURSE_SMALL, num_samples=10, progress=False)
    assert abs(res.attrs["log_partition"] - log_Z) < 1e-10
    assert np.abs(np.asarray(res.point["marginals"]) - marg).max() < 1e-12


def test_exact_draws_have_the_exact_marginals_and_pairs():
    model, phi = random_problem(2, 3, 2, seed=3)
    data = model.prepare(phi)
    S = 40000
    y = model.exact_sample(data, S, torch.Generator().manual_seed(0))
    assert y.shape == (S, 2, 3)
    _, marg, pair = enumerate_exact(model, phi)
    freq = torch.nn.functional.one_hot(y, 2).double().mean(0).numpy()
    z = (freq - marg) / np.sqrt(marg * (1 - marg) / S + 1e-300)
    assert np.abs(z).max() < 4.5
    both = ((y[:, 0, 0] == 1) & (y[:, 1, 0] == 1)).double().mean().item()   # a vertical pair
    p = pair[((0, 0), (1, 0))][1, 1]
    assert abs(both - p) < 4.5 * math.sqrt(p * (1 - p) / S)


def test_wide_grids_are_transposed_and_too_wide_ones_refused_with_the_size_needed():
    model = GridMRF.course(2)
    tall = model.prepare(np.zeros((40, 3), dtype=int))   # K^3 row states after no transposition
    wide = model.prepare(np.zeros((3, 40), dtype=int))   # the same after transposition
    assert abs(float(model.log_partition(tall)) - float(model.log_partition(wide))) < 1e-9
    with pytest.raises(ValueError, match=r"K\^13 = 8192 row states .*8192 x 8192 transfer matrix.*limit is 4096"):
        model.log_partition(model.prepare(np.zeros((13, 13), dtype=int)))
    with pytest.raises(ValueError, match="row states"):
        fit_exact(model, np.zeros((13, 20), dtype=int), progress=False)


# ---------------------------------------------------------------------------------------------------
# Mean field


def mf_elbo_written_out(model, phi, lam):
    """eq. M1 term by term: energy (node and edge) plus entropy."""
    theta = np.array(model.theta)
    H, W, _ = phi.shape
    e = sum(lam[i, j] @ phi[i, j] for i in range(H) for j in range(W))
    e += sum(lam[a] @ theta @ lam[b] for a, b in edges(H, W))
    return e - np.sum(lam * np.log(lam))


def test_mean_field_elbo_and_update_equal_the_equations_written_out():
    model, phi = random_problem(4, 5, 3, seed=2)
    data = model.prepare(phi)
    state = model.cavi_init(data, torch.Generator().manual_seed(0), init="node")
    state, elbo = model.cavi_update(data, state)
    lam = torch.softmax(state.params.log_lam, -1).numpy()
    assert abs(float(elbo) - mf_elbo_written_out(model, phi, lam)) < 1e-10
    assert abs(float(model.elbo(data, state.params)) - mf_elbo_written_out(model, phi, lam)) < 1e-10
    # eq. 3 for the white pixels, updated last from the final black ones
    theta = np.array(model.theta)
    for i, j in itertools.product(range(4), range(5)):
        if (i + j) % 2 == 1:
            field = sum(lam[a, b] for a, b in ((i - 1, j), (i + 1, j), (i, j - 1), (i, j + 1))
                        if 0 <= a < 4 and 0 <= b < 5)
            logits = phi[i, j] + theta @ field
            assert np.allclose(lam[i, j], np.exp(logits - np.logaddexp.reduce(logits)), atol=1e-13)


def test_the_raster_schedule_is_the_course_order_in_place():
    """One raster sweep from lambda = 1/K on a 2 x 2 grid, written out pixel by pixel with the updated values."""
    model, phi = random_problem(2, 2, 2, seed=4)
    theta = np.array(model.theta)
    lam = np.full((2, 2, 2), 0.5)
    for i, j in [(0, 0), (0, 1), (1, 0), (1, 1)]:
        field = sum(lam[a, b] for a, b in ((i - 1, j), (i + 1, j), (i, j - 1), (i, j + 1)) if 0 <= a < 2 and 0 <= b < 2)
        logits = phi[i, j] + theta @ field
        lam[i, j] = np.exp(logits - np.logaddexp.reduce(logits))
    data = model.prepare(phi)
    state, _ = model.cavi_update(data, model.cavi_init(data, None), schedule="raster")
    assert np.abs(torch.softmax(state.params.log_lam, -1).numpy() - lam).max() < 1e-13


@pytest.mark.parametrize("schedule", ["checkerboard", "raster"])
def test_mean_field_never_decreases_and_stays_below_log_Z(schedule):
    for seed in range(3):
        model, phi = random_problem(3, 4, 3, seed=seed, coupling=2.0)
        res = fit_cavi(model, phi, seed=0, num_iters=50, schedule=schedule, progress=False)
        elbo = np.asarray(res.trace["objective"])
        assert np.all(np.diff(elbo) >= -1e-10 * np.abs(elbo[1:])), schedule
        assert elbo[-1] <= float(model.log_partition(model.prepare(phi))) + 1e-10


def test_both_schedules_reach_the_same_fixed_point_under_weak_coupling():
    model, phi = random_problem(5, 6, 3, seed=8, coupling=0.3)
    a = fit_cavi(model, phi, seed=0, num_iters=200, schedule="checkerboard", progress=False)
    b = fit_cavi(model, phi, seed=0, num_iters=200, schedule="raster", progress=False)
    assert np.abs(np.asarray(a.point["marginals"]) - np.asarray(b.point["marginals"])).max() < 1e-12


def test_banded_updates_equal_unbanded_ones(monkeypatch):
    """Grids larger than one band are updated band by band; the result must not depend on the band size."""
    import models.grid.lattice as lattice

    model = GridMRF.course(4)
    data = model.prepare(add_noise(spiral(40, 4), 4, 0.3, torch.Generator().manual_seed(0)))
    g = torch.Generator().manual_seed(1)
    mf0 = model.cavi_init(data, g)
    y0 = model.gibbs_init(data, g)   # (with several chains the bands take the uniforms in another order)
    m0 = model.messages_init(data)

    def run():
        mf, elbo = model.cavi_update(data, mf0)
        m, change = model.message_update(data, model.message_update(data, m0)[0])
        y = model.gibbs_sweep(data, y0, torch.Generator().manual_seed(2)).y
        icm = model.em_update(data, y0).y
        return mf.lam, float(elbo), torch.stack(list(m)), change, y, icm
    whole = run()
    monkeypatch.setattr(lattice, "BAND_ELEMENTS", 1)   # bands of 8 rows
    assert len(lattice.bands(40, 160)) == 5
    banded = run()
    for a, b in zip(whole, banded):   # (matrix products of other shapes may round the last bit differently)
        a, b = torch.as_tensor(a), torch.as_tensor(b)
        assert torch.equal(a, b) if not a.is_floating_point() else torch.allclose(a, b, rtol=1e-13, atol=1e-13)


# ---------------------------------------------------------------------------------------------------
# Loopy BP


@pytest.mark.parametrize("shape", [(1, 7), (6, 1)])
@pytest.mark.parametrize("schedule", ["flooding", "sequential"])
def test_bp_is_exact_on_chains(shape, schedule):
    model, phi = random_problem(*shape, 3, seed=6, coupling=2.0)
    log_Z, marg, _ = enumerate_exact(model, phi)
    res = fit_bp(model, phi, schedule=schedule, num_iters=100, tol=1e-14, progress=False)
    assert res.attrs["converged"]
    assert np.abs(np.asarray(res.point["marginals"]) - marg).max() < 1e-12
    assert abs(-res.attrs["bethe_free_energy"] - log_Z) < 1e-10


def test_one_sequential_iteration_is_exact_on_a_chain():
    model, phi = random_problem(1, 6, 2, seed=7)
    data = model.prepare(phi)
    m, _ = model.message_update(data, model.messages_init(data), schedule="sequential")
    assert np.abs(model.beliefs(data, m)["marginals"].numpy() - enumerate_exact(model, phi)[1]).max() < 1e-12


def bethe_written_out(model, data, m):
    """eq. B4 from the node and pairwise beliefs, term by term."""
    H, W = data.shape
    phi, theta = data.phi.numpy(), np.array(model.theta)
    b = model.beliefs(data, m)["marginals"].numpy()
    pairs = {k: torch.exp(v).numpy() for k, v in model.pairwise_beliefs(data, m).items()}
    F = 0.0
    for i, j in itertools.product(range(H), range(W)):
        d = sum(1 for a, c in ((i - 1, j), (i + 1, j), (i, j - 1), (i, j + 1)) if 0 <= a < H and 0 <= c < W)
        F += -b[i, j] @ phi[i, j] - (d - 1) * (b[i, j] @ np.log(b[i, j]))
    for (a, c) in edges(H, W):
        p = pairs["horizontal" if a[0] == c[0] else "vertical"][a]
        F += -np.sum(p * theta) + np.sum(p * np.log(p))
    return F


def test_bethe_free_energy_equals_eq_B4_written_out_even_away_from_a_fixed_point():
    model, phi = random_problem(3, 4, 3, seed=9)
    data = model.prepare(phi)
    m = model.messages_init(data)
    for _ in range(2):
        m, _ = model.message_update(data, m, damping=0.3)
    assert abs(float(model.bethe_free_energy(data, m)) - bethe_written_out(model, data, m)) < 1e-10


def test_bp_fixed_point_beliefs_are_consistent_and_schedules_and_damping_agree():
    model, phi = random_problem(4, 4, 3, seed=10, coupling=0.5)
    data = model.prepare(phi)
    results = [fit_bp(model, phi, schedule=s, damping=d, num_iters=500, tol=1e-13, progress=False)
               for s, d in (("flooding", 0.0), ("sequential", 0.0), ("flooding", 0.5))]
    for r in results:
        assert r.attrs["converged"]
        assert np.abs(np.asarray(r.point["marginals"]) - np.asarray(results[0].point["marginals"])).max() < 1e-10
    m = model.messages_init(data)
    for _ in range(200):
        m, change = model.message_update(data, m)
    pairs = {k: torch.exp(v) for k, v in model.pairwise_beliefs(data, m).items()}
    b = model.beliefs(data, m)["marginals"]
    assert torch.allclose(pairs["horizontal"].sum(-1), b[:, :-1], atol=1e-10)   # sum over the right end
    assert torch.allclose(pairs["vertical"].sum(-2), b[1:], atol=1e-10)          # sum over the upper end


# ---------------------------------------------------------------------------------------------------
# Gibbs, SVI, ICM


def test_conditional_logits_equal_eq_2_written_out():
    model, phi = random_problem(3, 4, 3, seed=11)
    data = model.prepare(phi)
    y = torch.randint(3, (2, 3, 4), generator=torch.Generator().manual_seed(0))
    theta = np.array(model.theta)
    logits = model.conditional_logits(data, y).numpy()
    for c, i, j in itertools.product(range(2), range(3), range(4)):
        nb = [y[c, a, b].item() for a, b in ((i - 1, j), (i + 1, j), (i, j - 1), (i, j + 1)) if 0 <= a < 3 and 0 <= b < 4]
        assert np.allclose(logits[c, i, j], phi[i, j] + sum(theta[:, k] for k in nb), atol=1e-13)


def test_a_gibbs_sweep_draws_each_pixel_from_its_conditional():
    """On a 1 x 2 grid a sweep draws the left pixel given the right, then the right given the new left: with many
    chains from one state, the frequencies are those of eq. 2 (a fast test of the draw itself)."""
    model, phi = random_problem(1, 2, 3, seed=12, coupling=2.0)
    data = model.prepare(phi)
    theta = np.array(model.theta)
    C = 60000
    y = model.gibbs_sweep(data, model.gibbs_init(data, None, num_chains=C)._replace(y=torch.zeros(C, 1, 2,
                          dtype=torch.long)), torch.Generator().manual_seed(3)).y
    p_left = np.exp(phi[0, 0] + theta[:, 0])
    p_left /= p_left.sum()
    freq = torch.nn.functional.one_hot(y[:, 0, 0], 3).double().mean(0).numpy()
    assert np.abs(freq - p_left).max() < 4.5 * np.sqrt(p_left * (1 - p_left) / C).max()
    for k in range(3):   # the right pixel given the left one
        p = np.exp(phi[0, 1] + theta[:, k])
        p /= p.sum()
        sel = y[:, 0, 0] == k
        f = torch.nn.functional.one_hot(y[sel, 0, 1], 3).double().mean(0).numpy()
        assert np.abs(f - p).max() < 4.5 * np.sqrt(p * (1 - p) / int(sel.sum())).max() + 1e-12


def test_gibbs_marginals_agree_with_exact_within_monte_carlo_error():
    model, phi = random_problem(3, 3, 2, seed=13, coupling=1.5)
    res = fit_gibbs(model, phi, seed=0, num_samples=3000, warmup=200, num_chains=4, progress=False)
    exact = model.exact_marginals(model.prepare(phi))["marginals"].numpy()
    from inference.results import mcse_mean, rhat

    onehot = res.posterior["onehot"]           # (chains, draws, pixels x labels): all 9 pixels tracked
    z = (onehot.mean((0, 1)) - exact.reshape(-1)) / np.maximum(mcse_mean(onehot), 1e-12)
    assert np.abs(z).max() < 4.5
    assert np.nanmax(rhat(onehot)) < 1.01


def test_svi_with_the_mean_field_guide_reaches_the_cavi_fixed_point():
    model, phi = random_problem(2, 3, 2, seed=14, coupling=0.5)
    cavi = fit_cavi(model, phi, seed=0, num_iters=200, tol=0.0, progress=False)
    svi = fit_svi(model, phi, seed=0, num_iters=300, lr=0.1, progress=False)
    assert np.abs(np.asarray(svi.point["marginals"]) - np.asarray(cavi.point["marginals"])).max() < 1e-3
    assert abs(svi.attrs["elbo"] - float(cavi.trace["objective"][-1])) < 1e-5


def test_icm_never_decreases_the_log_density_and_stops_at_a_local_mode():
    model = GridMRF.course(3)
    x = add_noise(spiral(24, 3), 3, 0.3, torch.Generator().manual_seed(0))
    data = model.prepare(x)
    state = model.em_init(data, None)
    assert torch.equal(state.y, x)
    values = [float(model.log_joint(data, state.y))]
    for _ in range(30):
        state = model.em_update(data, state)
        values.append(float(model.log_joint(data, state.y)))
    assert all(b >= a for a, b in zip(values, values[1:]))
    y = state.y
    base = values[-1]
    for i, j, k in itertools.product(range(24), range(24), range(3)):   # no single-pixel change gains
        if k != y[i, j]:
            z = y.clone()
            z[i, j] = k
            assert float(model.log_joint(data, z)) <= base + 1e-9
    res = fit_em(model, x, seed=0, num_iters=50, progress=False)
    assert res.attrs["num_iters"] < 50


def test_denoising_beats_the_noisy_image_with_every_method():
    clean = spiral(48, 4)
    x = add_noise(clean, 4, 0.2, torch.Generator().manual_seed(0))
    data = {"x": x, "clean": clean}
    model = GridMRF.course(4)
    noisy_acc = float((x == clean).double().mean())
    for res, gain in ((fit_cavi(model, data, seed=0, num_iters=50, progress=False), 0.1),
                      (fit_bp(model, data, num_iters=50, progress=False), 0.1),
                      (fit_em(model, data, seed=0, num_iters=20, num_restarts=1, progress=False), 0.1),
                      # from random labels, with domains that dissolve slowly (theta = 10)
                      (fit_gibbs(model, data, seed=0, num_samples=50, warmup=20, num_chains=1, progress=False), 0.05)):
        acc = model.heldout_score(res, model.prepare(data), 0.0)["accuracy"]
        assert acc > noisy_acc + gain, (res.method, acc, noisy_acc)


# ---------------------------------------------------------------------------------------------------
# Simulation, images, bad input


def test_the_noise_channel_keeps_a_label_with_the_stated_probability():
    model = GridMRF(K=3, theta=0.3, node_strength=1.0)
    state, data = model.simulate((60, 60), torch.Generator().manual_seed(0))
    keep = math.e / (math.e + 2)
    observed = float((data.x == state.y).double().mean())
    assert abs(observed - keep) < 4.5 * math.sqrt(keep * (1 - keep) / 3600)
    assert torch.equal(data.clean, state.y)


def test_spiral_has_every_label_and_noise_replaces_the_stated_fraction():
    s = spiral(64, 5)
    assert s.shape == (64, 64) and set(s.unique().tolist()) == set(range(5))
    x = add_noise(s, 5, 0.2, torch.Generator().manual_seed(0))
    changed = float((x != s).double().mean())        # a replacement keeps the label with probability 1/5
    assert abs(changed - 0.2 * 4 / 5) < 0.02


@pytest.mark.parametrize("bad,match", [
    (np.array([[0, 1], [2, 0]]), r"data: labels must be in 0..1, found 2 at \(1, 0\)"),
    (np.array([[0, -1]]), r"labels must be in 0..1, found -1"),
    (np.array([[0.0, 0.5]]), r"labels must be integers 0..1, found 0.5"),
    (np.zeros((0, 3), dtype=int), r"non-empty \(H, W\) label image"),
    (np.zeros(4, dtype=int), r"non-empty \(H, W\) label image, got shape \(4,\)"),
    (np.full((2, 2, 2), np.nan), r"node potentials must be finite, found nan"),
    (np.zeros((2, 2, 3)), r"a node table must be \(H, W, K=2\)"),
    (np.array([["a", "b"]]), r"labels must be integers"),
])
def test_bad_data_is_refused_naming_the_problem(bad, match):
    with pytest.raises(ValueError, match=match):
        GridMRF.course(2).prepare(bad)


def test_bad_hyperparameters_are_refused_naming_the_argument():
    with pytest.raises(ValueError, match=r"theta must be symmetric: theta\[0\]\[1\] = 1.0 but theta\[1\]\[0\] = 0.0"):
        GridMRF(K=2, theta=((0.0, 1.0), (0.0, 0.0)))
    with pytest.raises(ValueError, match=r"theta must be K x K = 3 x 3, got shape \(2, 2\)"):
        GridMRF(K=3, theta=((0.0, 1.0), (1.0, 0.0)))
    with pytest.raises(ValueError, match="theta: edge potentials must be finite"):
        GridMRF(K=2, theta=((math.inf, 0.0), (0.0, 0.0)))
    with pytest.raises(ValueError, match="K must be an integer >= 2"):
        GridMRF(K=1)
    with pytest.raises(ValueError, match="node_strength must be a finite number"):
        GridMRF(K=2, node_strength=float("nan"))
    with pytest.raises(ValueError, match=r"clean: shape \(2, 2\) does not match the grid \(3, 3\)"):
        as_grid_data({"x": np.zeros((3, 3), dtype=int), "clean": np.zeros((2, 2), dtype=int)}, 2)
    assert GridMRF.potts(3, J=0.7) == GridMRF(K=3, theta=((0.7, 0, 0), (0, 0.7, 0), (0, 0, 0.7)), node_strength=1.0)


def test_methods_refuse_what_they_cannot_do():
    model = GridMRF.course(2)
    with pytest.raises(ValueError, match="latent sites are all discrete"):
        from inference import fit_nuts
        fit_nuts(model, COURSE_SMALL, seed=0, num_samples=5, warmup=5, num_chains=1, progress=False)
    with pytest.raises(ValueError, match="at most 64 pixels"):
        fit_svi(model, np.zeros((9, 9), dtype=int), seed=0, num_iters=1, progress=False)
    with pytest.raises(ValueError, match="schedule must be one of"):
        fit_bp(model, COURSE_SMALL, schedule="random", progress=False)
    with pytest.raises(ValueError, match=r"damping must be in \[0, 1\)"):
        fit_bp(model, COURSE_SMALL, damping=1.0, progress=False)


# ---------------------------------------------------------------------------------------------------
# The command line


def test_grid_small_prints_the_three_answers_at_full_precision(capsys):
    assert main(["grid", "small"]) == 0
    out = capsys.readouterr().out
    blocks = re.split(r"\n\n", out.strip())
    exact_block = next(b for b in blocks if b.startswith("exact marginals"))
    values = np.array([[float(v) for v in re.findall(r"[-+0-9.e]+(?=[,\]])", line)]
                       for line in exact_block.splitlines()[1:]])
    _, marg, _ = enumerate_exact(GridMRF.course(2), 10.0 * np.eye(2)[np.array(COURSE_SMALL)])
    assert values.shape == (3, 3) and np.abs(values - marg[..., 1]).max() < 1e-12
    assert "mean-field lambda_ij^1 (the course's order" in out and "loopy BP beliefs b_ij(1)" in out
    assert "NOT converged" not in out and re.search(r"log Z = 186\.0025785608843\d", out)


def test_benchmark_grid_prints_one_line_per_method_and_size(capsys):
    assert main(["benchmark", "grid-mrf", "--size", "16", "24", "-K", "3", "--repeats", "2"]) == 0
    out = capsys.readouterr().out
    for size in ("16x16", "24x24"):
        for method in ("cavi", "bp", "gibbs", "em"):
            assert re.search(rf"{size}\s+{method}\s+", out), (size, method)
    assert re.search(r"3x3 small\s+exact", out)


def test_compare_puts_the_methods_side_by_side_against_exact_marginals(tmp_path, capsys):
    assert main(["compare", "grid-mrf", "--data", "small", "--methods", "exact,cavi,bp,gibbs,em", "--out",
                 str(tmp_path), "--no-progress"]) == 0
    import pandas as pd

    table = pd.read_csv(tmp_path / "table.csv").set_index("method")
    assert list(table.index) == ["exact", "cavi", "bp", "gibbs", "em"]
    log_Z = enumerate_exact(GridMRF.course(2), 10.0 * np.eye(2)[np.array(COURSE_SMALL)])[0]
    assert abs(table.loc["exact", "value"] - log_Z) < 1e-10 and table.loc["cavi", "value"] < log_Z
    assert table.loc["bp", "onehot_max_abs_diff_vs_exact"] < 1e-12      # exact means: no Monte Carlo noise
    assert 2e-3 < table.loc["cavi", "onehot_max_abs_diff_vs_exact"] < 3e-3   # mean field's over-confidence
    assert {"denoising.png", "objectives.png", "report.md"} <= {p.name for p in tmp_path.iterdir()}


def test_compare_on_a_spiral_scores_each_method_against_the_clean_image(tmp_path, capsys):
    assert main(["compare", "grid-mrf", "--data", "spiral", "--size", "32", "--methods", "cavi,bp,em", "--out",
                 str(tmp_path), "--no-progress"]) == 0
    import pandas as pd

    table = pd.read_csv(tmp_path / "table.csv").set_index("method")
    assert (table["accuracy"] > 0.9).all(), table["accuracy"]
    assert main(["compare", "poisson-mf", "--size", "32"]) == 2
    assert "--size is not an option of poisson-mf" in capsys.readouterr().err
