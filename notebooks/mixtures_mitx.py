# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # MITx mixtures: K-means and EM on the toy data, BIC, Netflix completion, and a Bayesian GMM
#
# The MITx 6.86x project "Collaborative filtering via Gaussian mixtures", reproduced with the course's own
# algorithms (`models.course.gmm`: its initialisation, stopping rules and constants; docs/REFERENCE.md section 3)
# and then improved on: exact EM with missing entries and a diagonal covariance, with predictive uncertainty;
# a Bayesian GMM by CAVI with an approximate posterior over K.
# `INFERLAB_NB_QUICK=1` runs a small version (CI does).

# %%
import os

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from inference import fit_cavi
from inference.workflows.plots import plot_mixture
from models import BayesGMM
from models.course import gmm
from models.datasets import load_netflix
from models.mixture.em_missing import fit_missing, impute

QUICK = os.environ.get("INFERLAB_NB_QUICK") == "1"
SEEDS = range(5)
toy = load_netflix("toy")
print(f"toy data: {toy.shape[0]} points in {toy.shape[1]} dimensions")

# %% [markdown]
# ## K-means and EM for K = 1..4 (best of seeds 0..4 each, as the course asks)
#
# Each point is a small pie of its soft assignments (K-means: one colour), each circle has radius one sd.

# %%
km, em = {}, {}
for K in range(1, 5):
    km[K] = min((gmm.kmeans(toy, gmm.init(toy, K, s)[0]) for s in SEEDS), key=lambda r: r.objective)
    em[K] = max((gmm.em_complete(toy, gmm.init(toy, K, s)[0]) for s in SEEDS), key=lambda r: r.objective)
fig, axes = plt.subplots(2, 4, figsize=(20, 10))
for K in range(1, 5):
    plot_mixture(toy, km[K].mixture, km[K].post, f"K-means, K={K}: cost {km[K].objective:.4f}", ax=axes[0, K - 1])
    plot_mixture(toy, em[K].mixture, em[K].post, f"EM, K={K}: LL {em[K].objective:.4f}", ax=axes[1, K - 1])
plt.tight_layout()
plt.show()

# %% [markdown]
# ## The course's figures and BIC
#
# The course's values (best over seeds 0..4): K-means cost 5462.2975, 1684.9080, 1329.5949, 1035.4998; EM
# log-likelihood -1307.2234, -1175.7146, -1138.8909, -1138.6012; best BIC at K = 3, -1169.2589.
# BIC = LL - (p / 2) log n with p = K d + K + (K - 1) free parameters (larger is better).

# %%
course = {"kmeans_cost": [5462.2975, 1684.9080, 1329.5949, 1035.4998],
          "em_loglik": [-1307.2234, -1175.7146, -1138.8909, -1138.6012]}
table = pd.DataFrame({
    "K-means cost": [km[K].objective for K in range(1, 5)],
    "course cost": course["kmeans_cost"],
    "EM log-likelihood": [em[K].objective for K in range(1, 5)],
    "course LL": course["em_loglik"],
    "BIC": [gmm.bic(toy, em[K].mixture, em[K].objective) for K in range(1, 5)],
}, index=pd.Index(range(1, 5), name="K"))
assert np.allclose(table["K-means cost"], table["course cost"], atol=5e-5)
assert np.allclose(table["EM log-likelihood"], table["course LL"], atol=5e-5)
print("best K by BIC:", int(table["BIC"].idxmax()), f"(BIC {table['BIC'].max():.4f}; the course: K = 3, -1169.2589)")
table.round(4)

# %% [markdown]
# ## The course's question: do K-means and EM find the same clusters?
#
# Evidence, K by K: the agreement of K-means' hard clusters with EM's most probable component (the fraction of
# points on which they agree, after matching components by the Hungarian method), the distance between matched
# means, the spread of EM's assignments (mean entropy, 0 = hard), and the variances.

# %%
from scipy.optimize import linear_sum_assignment

rows = []
for K in range(1, 5):
    a, b = km[K].post.argmax(1), em[K].post.argmax(1)
    overlap = np.array([[np.sum((a == i) & (b == j)) for j in range(K)] for i in range(K)])
    ri, ci = linear_sum_assignment(-overlap)
    dist = np.linalg.norm(km[K].mixture.mu[ri] - em[K].mixture.mu[ci], axis=1)
    p = np.clip(em[K].post, 1e-300, 1)
    rows.append({"K": K, "points assigned alike": overlap[ri, ci].sum() / len(toy),
                 "max distance between matched means": dist.max(),
                 "EM mean assignment entropy (nats)": abs(float((p * np.log(p)).sum(1).mean())),
                 "K-means sd per cluster": np.round(np.sqrt(km[K].mixture.var[ri]), 3),
                 "EM sd per component": np.round(np.sqrt(em[K].mixture.var[ci]), 3)})
pd.DataFrame(rows).set_index("K")

# %% [markdown]
# Read the table with the plots: for well-separated clusters the two methods agree on almost every point, and
# they differ where clusters overlap. There EM shares points between components (non-zero entropy) and fits a
# variance per component, so its clusters have different widths, while K-means assigns each point to the nearest
# mean whatever the spreads. Its cost also keeps falling as K grows, so it cannot choose K; EM's likelihood with
# the BIC penalty can.

# %% [markdown]
# ## Netflix: the course's runs (K = 1 and K = 12, seeds 0..4) and the completed matrix
#
# The log-likelihood of each seed's converged mixture (the course asks for the best of the five per K), then the
# RMSE of the matrix filled by the best K = 12 mixture against the complete matrix.

# %%
nf = load_netflix()
X, gold = nf.incomplete, nf.complete
if QUICK:  # a corner of the matrix keeps CI fast
    X, gold = X[:300, :200], gold[:300, :200]
print(f"Netflix matrix {X.shape[0]} x {X.shape[1]}, {np.mean(X == 0):.1%} missing")
runs = {K: [gmm.em_missing(X, gmm.init(X, K, s)[0]) for s in (SEEDS if not QUICK else range(2))] for K in (1, 12)}
pd.DataFrame({f"K = {K}": [f"{r.objective:.4f}" for r in rs] for K, rs in runs.items()},
             index=pd.Index(range(len(runs[1])), name="seed"))

# %%
rated_missing = (X == 0) & (gold != 0)
best = max(runs[12], key=lambda r: r.objective)
filled = gmm.fill_matrix(X, best.mixture)
exact = fit_missing(X, 12, covariance="diag", n_init=1 if QUICK else 5, seed=0)
filled2, sd = impute(X, exact.mixture)
pd.DataFrame({
    "RMSE, all entries (the course's figure)": [gmm.rmse(gold, filled), gmm.rmse(gold, filled2)],
    "RMSE, missing entries only": [gmm.rmse(gold, filled, rated_missing), gmm.rmse(gold, filled2, rated_missing)],
}, index=["course EM, K = 12 (best seed)", "exact EM, diagonal covariance, K = 12"]).round(4)

# %% [markdown]
# Filled entries against the true ratings (missing entries only): a filled entry is a posterior average of
# component means, so predictions crowd the middle of the 1..5 scale. The course's M-step keeps a mean's old
# value where fewer than one (weighted) rating supports it, and its means start at rows of X, whose missing
# entries are 0: filled values near 0 are such never-updated coordinates.

# %%
fig, axes = plt.subplots(1, 2, figsize=(12, 4), sharey=True)
for ax, f, name in ((axes[0], filled, "course EM"), (axes[1], filled2, "exact EM, diagonal")):
    for r in range(1, 6):
        sel = rated_missing & (gold == r)
        ax.violinplot(f[sel], positions=[r], showmedians=True, widths=0.8)
    ax.plot([1, 5], [1, 5], "k--", lw=0.8)
    ax.set(xlabel="true rating (missing entries)", ylabel="filled value", title=name)
plt.show()

# %%
err = np.abs(filled2 - gold)[rated_missing]
s = sd[rated_missing]
bins = np.quantile(s, np.linspace(0, 1, 6))
which = np.digitize(s, bins[1:-1])
plt.figure(figsize=(5, 3.5))
plt.plot([s[which == b].mean() for b in range(5)], [err[which == b].mean() for b in range(5)], "o-")
plt.xlabel("predictive sd (quintile mean)")
plt.ylabel("mean absolute error")
plt.title("larger predictive sd, larger error")
plt.show()

# %% [markdown]
# ## Bayesian GMM on the toy data: CAVI for K = 1..6, and an approximate posterior over K
# exp(ELBO_K) stands in for p(X | K) (a lower bound, uniform prior over K).

# %%
elbos = {K: fit_cavi(BayesGMM(K=K, beta0=0.01), toy, seed=0, num_iters=50 if QUICK else 300,
                     progress=False).objective for K in range(1, 7)}
e = np.array(list(elbos.values()))
post_K = np.exp(e - e.max()) / np.exp(e - e.max()).sum()
plt.figure(figsize=(5, 3.5))
plt.bar(list(elbos), post_K)
plt.xlabel("K")
plt.ylabel("approx. p(K | X)")
plt.show()
dict(zip(elbos, np.round(post_K, 3)))
