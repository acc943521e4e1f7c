"""Relabelling under label switching (inference/workflows/relabel.py): injected permutations are undone exactly by
each method, and on well-separated simulated data the relabelled Gibbs means sit within Monte Carlo error of the truth
while the raw per-component means are averaged over the labellings."""

import numpy as np
import pytest
import torch

from inference import fit_gibbs
from inference.results import rhat
from inference.workflows.relabel import count_switches, ecr, permute, pivotal, relabel_mixture, stephens
from models import BayesGMM

MU = np.array([[-6.0, 0.0], [0.0, 6.0], [6.0, -3.0]])  # three well-separated components in 2-D
PI = np.array([0.5, 0.3, 0.2])


def scrambled(S=120, seed=0):
    """Draws near (PI, MU), every draw's components permuted by a known random permutation, and the classification
    probabilities of 90 points under each draw (permuted alike)."""
    rng = np.random.default_rng(seed)
    mu = MU[None] + 0.2 * rng.standard_normal((S, 3, 2))
    pi = PI[None] * np.exp(0.05 * rng.standard_normal((S, 3)))
    pi /= pi.sum(1, keepdims=True)
    x = MU[rng.choice(3, 90, p=PI)] + rng.standard_normal((90, 2))
    logp = np.log(pi)[:, None, :] - 0.5 * ((x[None, :, None, :] - mu[:, None, :, :]) ** 2).sum(-1)
    probs = np.exp(logp - logp.max(-1, keepdims=True))
    probs /= probs.sum(-1, keepdims=True)
    shuffle = np.stack([rng.permutation(3) for _ in range(S)])
    shuffle[0] = np.arange(3)  # draw 0, the pivot, keeps the true labels
    return mu, pi, probs, shuffle


@pytest.mark.parametrize("method", ["stephens", "pivotal", "ecr"])
def test_injected_permutations_are_undone_exactly(method):
    mu, pi, probs, shuffle = scrambled()
    mu_s, pi_s = permute(mu, shuffle), permute(pi, shuffle)
    probs_s = permute(probs.swapaxes(1, 2), shuffle).swapaxes(1, 2)
    assert not np.allclose(mu_s, mu)  # the scrambling does switch labels
    if method == "stephens":
        perms, iterations = stephens(probs_s)
        assert iterations >= 2
    elif method == "pivotal":
        perms = pivotal(np.concatenate([mu_s, np.log(pi_s)[..., None]], -1), pivot=0)
    else:
        perms = ecr(probs_s.argmax(-1), probs_s[0].argmax(-1), 3)
    # relabelled, every draw is in one common order: the true one up to a single global permutation (Stephens' labels
    # are its own; pivotal reordering and ECR take the pivot's, the true order here)
    back = permute(mu_s, perms)
    glob = np.array([int(np.argmin(((mu[0] - back[0][k]) ** 2).sum(-1))) for k in range(3)])
    assert sorted(glob) == [0, 1, 2] and (method == "stephens" or list(glob) == [0, 1, 2])
    np.testing.assert_array_equal(back, mu[:, glob])
    np.testing.assert_array_equal(permute(pi_s, perms), pi[:, glob])


def test_component_quantities_undo_injected_permutations():
    """SBC's relabelled quantities: every draw's components mapped back to the pivot's labels, per component."""
    from inference.workflows.relabel import component_quantities

    mu, pi, _, shuffle = scrambled()
    q = component_quantities(permute(pi, shuffle), permute(mu, shuffle), pivot=0, max_per_key=2)
    assert set(q) == {f"{n}[{k}{j}]" for k in range(3) for n, j in (("pi", ""), ("mu", ",0"), ("mu", ",1"))}
    for k in range(3):
        np.testing.assert_array_equal(q[f"pi[{k}]"], pi[:, k])
        np.testing.assert_array_equal(q[f"mu[{k},1]"], mu[:, k, 1])
    with pytest.raises(ValueError, match="pi must be"):
        component_quantities(pi, mu[:, :2])


def test_permute_and_switch_counts():
    x = np.arange(12.0).reshape(2, 3, 2)
    perms = np.array([[2, 0, 1], [0, 1, 2]])
    np.testing.assert_array_equal(permute(x, perms)[0], x[0][[2, 0, 1]])
    chains = np.array([[[0, 1], [0, 1], [1, 0], [1, 0], [0, 1]], [[0, 1]] * 5])
    np.testing.assert_array_equal(count_switches(chains), [2, 0])
    with pytest.raises(ValueError, match="allocations must lie"):
        ecr(np.array([[0, 3]]), np.array([0, 1]), 2)


def test_relabelled_gibbs_means_match_the_truth_on_separated_data():
    model = BayesGMM(K=2, beta0=0.01, a0=2.0, b0=2.0)
    g = torch.Generator().manual_seed(0)
    z = torch.arange(80) % 2
    truth = torch.tensor([[-4.0, 0.0], [4.0, 1.0]], dtype=torch.float64)
    X = truth[z] + torch.randn(80, 2, generator=g, dtype=torch.float64)
    # chains started in opposite labellings: raw component means disagree between chains, relabelled ones agree
    res = fit_gibbs(model, X, seed=1, num_samples=300, warmup=100, num_chains=4, progress=False)
    raw = np.asarray(res.posterior["mu"])
    assert rhat(raw).max() > 1.2  # one chain sits in the other labelling (measured: 1.53)
    out = relabel_mixture(model, X, res, method="stephens")
    mu = out.draws["mu"]
    assert mu.shape == raw.shape and out.perms.shape == raw.shape[:3]
    order = np.argsort(mu.mean((0, 1))[:, 0])  # the relabelled components in truth's order (by first coordinate)
    mean = mu.mean((0, 1))[order]
    sd = mu.std((0, 1))[order]
    # the posterior mean of a component mean is the data mean of its points (flat prior, beta0 small) +- sd / sqrt(ESS)
    target = np.stack([X[z == k].mean(0).numpy() for k in range(2)])
    assert np.all(np.abs(mean - target) < 4 * sd / np.sqrt(50) + 0.05), (mean, target)
    table = out.summary
    assert set(table["quantity"]) == {"pi", "mu[0]", "mu[1]", "tau"} and (table["rhat"] < 1.05).all(), table



def test_compare_picks_the_best_converged_sampler_as_reference():
    """An unconverged Gibbs run (its chains in different places) is not used as the reference when a converged NUTS
    run is there; with both unconverged, the better one is used (and flagged); exact inference always wins."""
    from inference.results import InferenceResult
    from inference.workflows.compare import pick_reference

    rng = np.random.default_rng(0)

    def result(method, draws, variational=None, **attrs):
        return InferenceResult(method, None, {"rate": draws}, {}, variational, {}, {}, dict(attrs))

    mixed = rng.standard_normal((4, 500, 3))                      # R-hat ~ 1, ESS ~ 2000
    stuck = rng.standard_normal((4, 500, 3)) + np.arange(4)[:, None, None]  # four chains, four places
    half = rng.standard_normal((4, 500, 3)) + 0.3 * np.arange(4)[:, None, None]
    runs = {"gibbs": result("gibbs", stuck), "nuts": result("nuts", mixed),
            "cavi": result("cavi", mixed, variational={"q": np.zeros(1)})}
    assert pick_reference(runs, "rate") == "nuts"
    assert pick_reference({"gibbs": result("gibbs", mixed), "nuts": result("nuts", mixed)}, "rate") == "gibbs"
    assert pick_reference({"gibbs": result("gibbs", stuck), "nuts": result("nuts", half)}, "rate") == "nuts"
    exact = result("exact", mixed[:1], independent_draws=True)
    assert pick_reference({"exact": exact, "gibbs": result("gibbs", mixed)}, "rate") == "exact"


@pytest.mark.parametrize("full", [False, True], ids=["spherical", "full"])
@pytest.mark.parametrize("method", ["cavi", "gibbs"])
def test_relabel_mixture_takes_every_method_of_both_mixtures(full, method):
    from inference import fit_cavi
    from models import BayesGMMFull

    model = BayesGMMFull(K=2) if full else BayesGMM(K=2)
    _, data = model.sample(30, 2, torch.Generator().manual_seed(1))
    res = (fit_cavi(model, data, seed=0, num_iters=50, progress=False) if method == "cavi" else
           fit_gibbs(model, data, seed=0, num_samples=40, warmup=20, num_chains=2, progress=False))
    for how in ("stephens", "pivotal", "ecr"):
        out = relabel_mixture(model, data, res, method=how)
        C, S = np.asarray(res.posterior["pi"]).shape[:2]
        assert out.perms.shape == (C, S, 2) and out.switches.shape == (C,)
        # relabelling only reorders: each draw's set of components is unchanged
        np.testing.assert_allclose(np.sort(out.draws["pi"], -1), np.sort(np.asarray(res.posterior["pi"]), -1))
        assert len(out.summary) == 2 * (1 + 2 + (4 if full else 1))
        lj = res.sample_stats.get("log_joint", res.posterior.get("log_joint"))
        if how != "stephens":  # the pivot, the draw of highest log joint, keeps its labels
            assert list(out.perms.reshape(C * S, 2)[int(np.argmax(np.asarray(lj).reshape(-1)))]) == [0, 1]
    with pytest.raises(ValueError, match="method must be one of"):
        relabel_mixture(model, data, res, method="sorting")


@pytest.mark.parametrize("full", [False, True], ids=["spherical", "full"])
def test_batched_classification_probs_equal_the_draw_by_draw_ones(full):
    """relabel_mixture computes p(z_u = k | theta_s, x) for a batch of draws at once; each draw's must be the one the
    Gibbs sweep uses (a broadcast over the wrong axis would mix draws or components)."""
    from models import BayesGMMFull

    model = BayesGMMFull(K=3) if full else BayesGMM(K=3)
    _, data = model.sample(25, 2, torch.Generator().manual_seed(2))
    res = fit_gibbs(model, data, seed=0, num_samples=6, warmup=5, num_chains=2, progress=False)
    draws = [torch.as_tensor(np.asarray(res.posterior[k])) for k in ("pi", "mu", model.precision_site)]
    batched = model.classification_probs(model.prepare(data), *draws)       # (chain, draw, n, K)
    assert batched.shape == (2, 6, 25, 3)
    for c in range(2):
        for s in range(6):
            one = model._z_probs(model.prepare(data), model.GibbsState(*(d[c, s] for d in draws)))
            torch.testing.assert_close(batched[c, s], one, rtol=1e-12, atol=1e-15)
    assert not torch.allclose(batched[0, 0], batched[1, 5])


def test_compare_reports_relabelled_components_of_a_mixture(tmp_path):
    import pandas as pd

    from inference.workflows.compare import compare

    model = BayesGMM(K=2)
    _, data = model.sample(40, 2, torch.Generator().manual_seed(2))
    comp = compare(model, data, methods=["cavi", "gibbs"], seed=0, out=tmp_path, progress=False,
                   settings={"gibbs": {"num_samples": 60, "warmup": 30, "num_chains": 2}, "cavi": {"num_iters": 30}})
    table = pd.read_csv(tmp_path / "components.csv")
    assert set(table["method"]) == {"cavi", "gibbs"} and set(table["component"]) == {0, 1}
    assert (tmp_path / "relabelled_trace.png").is_file()
    assert {p.name for p in comp.files} >= {"components.csv", "relabelled_trace.png"}


def test_poisson_mf_alignment_undoes_injected_permutations_and_scales():
    from inference.workflows.relabel import align_poisson_mf

    rng = np.random.default_rng(3)
    theta = rng.gamma(2.0, 1.0, (1, 7, 3)).repeat(50, 0)
    eta = rng.gamma(2.0, 1.0, (1, 5, 3)).repeat(50, 0)
    perms = np.stack([rng.permutation(3) for _ in range(50)])
    perms[0] = np.arange(3)
    c = np.exp(rng.standard_normal((50, 1, 3)))
    t_s = permute((theta * c).swapaxes(1, 2), perms).swapaxes(1, 2)
    e_s = permute((eta / c).swapaxes(1, 2), perms).swapaxes(1, 2)
    t, e, found = align_poisson_mf(t_s, e_s, reference=0)
    np.testing.assert_allclose(t, t[[0]].repeat(50, 0), rtol=1e-12)
    np.testing.assert_allclose(e, e[[0]].repeat(50, 0), rtol=1e-12)
    np.testing.assert_allclose(np.einsum("snk,smk->snm", t, e), np.einsum("snk,smk->snm", t_s, e_s), rtol=1e-12)
    np.testing.assert_allclose(e.sum(1), 1.0)  # the scale fixed by normalised loadings


def test_gaussian_mf_procrustes_undoes_injected_rotations():
    from scipy.stats import ortho_group

    from inference.workflows.relabel import align_gaussian_mf

    rng = np.random.default_rng(4)
    U, V = rng.standard_normal((1, 8, 3)).repeat(30, 0), rng.standard_normal((1, 6, 3)).repeat(30, 0)
    R = np.stack([np.eye(3)] + [ortho_group.rvs(3, random_state=i) for i in range(29)])  # signed permutations too
    u, v, found = align_gaussian_mf(U @ R, V @ R, reference=0)
    np.testing.assert_allclose(u, U, atol=1e-10)
    np.testing.assert_allclose(v, V, atol=1e-10)
    np.testing.assert_allclose(found, R.swapaxes(1, 2), atol=1e-10)
