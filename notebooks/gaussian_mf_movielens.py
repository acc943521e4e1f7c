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
# # Gaussian matrix factorisation on MovieLens-100K: SVD vs SGD vs ALS vs CAVI vs Gibbs
#
# One official fold (u1: 80,000 training ratings, 20,000 test ratings). Point estimates (truncated SVD, biased SGD,
# tuned ALS) next to the Bayesian model fitted three ways: BPMF by Gibbs, variational BPMF by CAVI, and the
# course's fixed-prior model by CAVI and by minibatch SVI (ELBO and test NLL per epoch). Then the predictive
# intervals of one user. `INFERLAB_NB_QUICK=1` runs a small version (the test suite does).
# The five-fold figures come from `inferlab benchmark gaussian-mf --data movielens-100k`.

# %%
import math
import os

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from inference import fit_cavi, fit_gibbs, fit_svi
from inference.baselines import truncated_svd
from inference.baselines import als_sparse, funk_svd, tune_als
from models.datasets import load_movielens_100k
from models.gaussian_mf import GaussianMF, as_rating_data, heldout_scores, predict, recommend

QUICK = os.environ.get("INFERLAB_NB_QUICK") == "1"
K = 5 if QUICK else 10
ml = load_movielens_100k()
train, test = (as_rating_data(r) for r in ml.folds[0])
print(train, test)


def rmse(pred):
    return float(np.sqrt(np.mean((np.clip(pred, 1, 5) - test.values.numpy()) ** 2)))


rows, cols = test.rows.numpy(), test.cols.numpy()
table = {}

# %% [markdown]
# ## Point estimates

# %%
mu = float(train.values.mean())
A = np.zeros(train.shape)
A[train.rows.numpy(), train.cols.numpy()] = train.values.numpy() - mu
svd = truncated_svd(A, K)
table["SVD (centred, missing = 0)"] = rmse(mu + np.einsum("nk,nk->n", svd.U[rows], svd.V[cols]))
funk = funk_svd(train, 100, epochs=2 if QUICK else 20)
table["biased SGD (Surprise defaults)"] = rmse(funk.predict(rows, cols))
lam, scores = tune_als(train, K, clip=(1, 5), **({"lams": (0.08, 0.12)} if QUICK else {}))
als = als_sparse(train, K, lam=lam)
table[f"ALS-WR with biases (lam = {lam}, tuned)"] = rmse(als.predict(rows, cols))
print(pd.Series(scores, name="validation RMSE by lam"))

# %% [markdown]
# ## The course's model: CAVI vs minibatch SVI on the same ELBO
#
# Fixed isotropic priors and alpha ~ Ga(1, 1). SVI uses the reparameterised ELBO with the analytic KL
# (TraceMeanField_ELBO), batches of 1,000 ratings; both report the closed-form ELBO per rating and the test NLL
# per rating (moment-matched Gaussian predictive) after every sweep / epoch.

# %%
fixed = GaussianMF(K=K, prior="fixed", noise_prior=(1.0, 1.0))


def nll(q):  # q: the variational family (the same type for CAVI and SVI)
    return {"test_nll": fixed.test_nll(train, q, test)}


cavi_fixed = fit_cavi(fixed, train, seed=0, num_iters=10 if QUICK else 100, monitor=nll, progress=False)
per_epoch = math.ceil(len(train) / 1000)
epochs = 1 if QUICK else 20
svi = fit_svi(fixed, train, seed=0, num_iters=epochs * per_epoch, subsample_size=1000, lr=0.02,
              eval_every=per_epoch, monitor=nll, progress=False)
fig, axes = plt.subplots(1, 2, figsize=(12, 4))
for res, label in ((cavi_fixed, "CAVI (per sweep)"), (svi, "SVI (per epoch)")):
    t = np.asarray(res.trace["seconds"])
    elbo = np.asarray(res.trace["elbo"] if "elbo" in res.trace else res.trace["objective"]) / len(train)
    keep = ~np.isnan(elbo)
    axes[0].plot(t[keep], elbo[keep], "o-", ms=3, label=label)
    axes[1].plot(t[keep], np.asarray(res.trace["test_nll"])[keep], "o-", ms=3, label=label)
axes[0].set(xlabel="seconds", ylabel="ELBO per rating", ylim=(-2.5, None))
axes[1].set(xlabel="seconds", ylabel="test NLL per rating")
for ax in axes:
    ax.legend()
plt.show()
for res, name in ((cavi_fixed, "CAVI, fixed prior"), (svi, "SVI, fixed prior")):
    table[name] = rmse(predict(fixed, train, res, rows, cols)[0])

# %% [markdown]
# ## BPMF: Gibbs and variational BPMF (CAVI)

# %%
bpmf = GaussianMF(K=K, prior="bpmf", noise_prior=(1.0, 1.0))
gibbs = fit_gibbs(bpmf, train, seed=0, num_samples=20 if QUICK else 400, warmup=10 if QUICK else 50,
                  num_chains=1, progress=False)
vb = fit_cavi(bpmf, train, seed=0, num_iters=10 if QUICK else 200, tol=1e-7, progress=False)
lpd = {}
for res, name in ((gibbs, "Gibbs, BPMF"), (vb, "CAVI, BPMF")):
    table[name] = rmse(predict(bpmf, train, res, rows, cols)[0])
    lpd[name] = heldout_scores(bpmf, train, res, test)["heldout_lpd_per_rating"]
for res, name in ((cavi_fixed, "CAVI, fixed prior"), (svi, "SVI, fixed prior")):
    lpd[name] = heldout_scores(fixed, train, res, test)["heldout_lpd_per_rating"]
summary = pd.DataFrame({"test RMSE (u1)": pd.Series(table), "test log pred. density / rating": pd.Series(lpd)})
summary.sort_values("test RMSE (u1)")

# %% [markdown]
# ## Predictive intervals for one user
#
# User 0's held-out ratings against the Gibbs posterior of the mean rating (90% interval) and of a new rating
# (mean +- 1.645 predictive sd, which adds the noise 1 / alpha); then the top unrated movies.

# %%
user = 0
sel = rows == user
m, s = predict(bpmf, train, gibbs, rows[sel], cols[sel], clip=(1, 5))
pred_sd = np.sqrt(s ** 2 + float(np.mean(1 / np.asarray(gibbs.posterior["alpha"]))))
order = np.argsort(m)[:: max(1, sel.sum() // 40)]
x = np.arange(len(order))
plt.figure(figsize=(11, 4))
plt.errorbar(x, m[order], yerr=1.645 * pred_sd[order], fmt="none", ecolor="0.8", label="new rating, 90%")
plt.errorbar(x, m[order], yerr=1.645 * s[order], fmt="o", ms=3, label="mean rating, 90%")
plt.plot(x, test.values.numpy()[sel][order], "kx", label="held-out rating")
plt.xlabel("held-out movies of user 0 (sorted by predicted mean)")
plt.ylabel("rating")
plt.legend()
plt.show()
recommend(bpmf, train, gibbs, user, n=10, titles=ml.titles)
