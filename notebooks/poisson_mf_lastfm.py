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
# # Poisson matrix factorisation of LastFM listening counts
#
# Load the 999 x 2,000 LastFM count matrix, fit the Poisson-gamma factorisation by CAVI (course
# setting: K=40, a=1, b=0.5), look at the ELBO, the "genres" (top artists of the heaviest factors),
# recommendations for user 349, and compare CAVI's predicted rates with a Gibbs sampler's.
# Set `INFERLAB_NB_QUICK=1` for a fast run (the test suite does).

# %%
import os

import matplotlib.pyplot as plt
import numpy as np

from inference import fit_cavi, fit_gibbs
from models import PoissonMF
from models.datasets import load_lastfm
from models.poisson_mf import expected_rates, factor_top_items, recommend

QUICK = os.environ.get("INFERLAB_NB_QUICK") == "1"
ITERS = 20 if QUICK else 200
SWEEPS = 20 if QUICK else 300

X = load_lastfm()
X

# %%
model = PoissonMF.course_lastfm(K=40)
cavi = fit_cavi(model, X, seed=0, num_iters=ITERS, num_samples=20)
print(cavi.describe())

# %%
elbo = cavi.trace["objective"] / X.total
fig, ax = plt.subplots(figsize=(6, 3.5))
ax.plot(np.arange(1, len(elbo)), elbo[1:])
ax.set(xlabel="CAVI sweep", ylabel="ELBO / sum(X)", title="rescaled ELBO (the course reports about -2)")
plt.show()

# %% [markdown]
# ## Genres: the top artists of the factors with the largest total loading

# %%
genres = factor_top_items(cavi, n=10, num_factors=5)
for k, grp in genres.groupby("factor", sort=False):
    print(f"factor {k} (total loading {grp['loading'].iloc[0]:.0f}): " + ", ".join(grp["name"]))

# %% [markdown]
# ## Recommendations for user 349 (the course's hip-hop listener)

# %%
listened = X.cols[X.rows == int(np.flatnonzero(X.row_labels == 349)[0])]
top_heard = X.values[X.rows == int(np.flatnonzero(X.row_labels == 349)[0])].argsort(descending=True)[:10]
print("most played:", ", ".join(X.col_names[listened[top_heard].numpy()]))
recommend(cavi, 349, n=10)

# %% [markdown]
# ## CAVI vs Gibbs: posterior mean rates on the tracked cells
# Factors are not identifiable (permutations, scalings), so methods are compared on rates theta_n . eta_m.

# %%
gibbs = fit_gibbs(model, X, seed=0, num_samples=SWEEPS // 2, warmup=SWEEPS // 2, num_chains=1)
rows, cols = model.invariant_cells(X)
r_cavi = expected_rates(cavi, rows, cols).numpy()
r_gibbs = expected_rates(gibbs, rows, cols).numpy()
fig, ax = plt.subplots(figsize=(4.5, 4.5))
ax.loglog(r_gibbs, r_cavi, ".", ms=3, alpha=0.5)
lim = [max(1e-3, r_gibbs.min()), r_gibbs.max()]
ax.plot(lim, lim, "k--", lw=0.8)
ax.set(xlabel="Gibbs posterior mean rate", ylabel="CAVI posterior mean rate")
plt.show()
print("correlation of log rates:", np.corrcoef(np.log(r_cavi), np.log(r_gibbs))[0, 1])
