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
# # Gaussian mixtures: the MITx course's K-means and EM, matrix completion on Netflix, and a Bayesian GMM
#
# Toy data: K-means vs EM mixtures (the course's plots) and the BIC curve. Netflix: the course's EM
# completion (RMSE over all entries and over the missing ones only) next to exact EM with a diagonal
# covariance and predictive uncertainty. Bayesian GMM: CAVI over K and an approximate posterior over K.
# `INFERLAB_NB_QUICK=1` runs a small version (the test suite does).

# %%
import os

import matplotlib.pyplot as plt
import numpy as np

from inference import fit_cavi
from inference.workflows.plots import plot_mixture
from models import BayesGMM
from models.course import gmm
from models.datasets import load_netflix
from models.mixture.em_missing import fit_missing, impute

QUICK = os.environ.get("INFERLAB_NB_QUICK") == "1"
toy = load_netflix("toy")

# %% [markdown]
# ## K-means vs EM on the toy data (K = 3, best of seeds 0..4)

# %%
best_km = min((gmm.kmeans(toy, gmm.init(toy, 3, s)[0]) for s in range(5)), key=lambda r: r.objective)
best_em = max((gmm.em_complete(toy, gmm.init(toy, 3, s)[0]) for s in range(5)), key=lambda r: r.objective)
fig, axes = plt.subplots(1, 2, figsize=(12, 6))
plot_mixture(toy, best_km.mixture, best_km.post, f"K-means, cost {best_km.objective:.4f}", ax=axes[0])
plot_mixture(toy, best_em.mixture, best_em.post, f"EM, LL {best_em.objective:.4f}", ax=axes[1])
plt.show()

# %% [markdown]
# ## BIC over K (larger is better; the course finds K = 3)

# %%
bics = {}
for K in range(1, 5):
    run = max((gmm.em_complete(toy, gmm.init(toy, K, s)[0]) for s in range(5)), key=lambda r: r.objective)
    bics[K] = gmm.bic(toy, run.mixture, run.objective)
plt.figure(figsize=(5, 3.5))
plt.plot(list(bics), list(bics.values()), "o-")
plt.xlabel("K")
plt.ylabel("BIC")
plt.show()
bics

# %% [markdown]
# ## Netflix completion

# %%
nf = load_netflix()
X, gold = nf.incomplete, nf.complete
if QUICK:  # a corner of the matrix keeps the test fast
    X, gold = X[:300, :200], gold[:300, :200]
rated_missing = (X == 0) & (gold != 0)
K = 12
course = max((gmm.em_missing(X, gmm.init(X, K, s)[0]) for s in range(5)), key=lambda r: r.objective)
filled = gmm.fill_matrix(X, course.mixture)
exact = fit_missing(X, K, covariance="diag", n_init=1 if QUICK else 5, seed=0)
filled2, sd = impute(X, exact.mixture)
print(f"course EM  : RMSE all entries {gmm.rmse(gold, filled):.4f}, missing only {gmm.rmse(gold, filled, rated_missing):.4f}")
print(f"exact diag : RMSE all entries {gmm.rmse(gold, filled2):.4f}, missing only {gmm.rmse(gold, filled2, rated_missing):.4f}")

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
