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
# # The matrix-factorisation lab and lecture: gradient descent, truncated SVD, completion, ALS and SGD
#
# The course's lab (docs/REFERENCE.md section 2) factorises a 3 x 3 matrix at rank 2 by its SGD pseudo-code and
# compares the loss with the truncated SVD's, which Eckart-Young says is the minimum; then hides two entries and
# completes them. The lecture adds alternating least squares (ALS) with a ridge penalty and SGD on random entries
# of the same regularised objective. All of them live in `inference.baselines` (lab.py); this notebook calls
# them and shows the figures. `INFERLAB_NB_QUICK=1` runs fewer epochs (CI does).

# %%
import os
import time

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from inference.baselines import LAB_MASK, LAB_MATRIX, als, ridge_objective, sgd_factorise, sgd_random, truncated_svd

QUICK = os.environ.get("INFERLAB_NB_QUICK") == "1"
EPOCHS = 200 if QUICK else 1000
A = LAB_MATRIX
pd.DataFrame(A)

# %% [markdown]
# ## Gradient-descent factorisation against the truncated SVD (Eckart-Young)
#
# The lab's SGD visits the entries in row-major order, updating U_r and then V_c with the new U_r, from
# U, V ~ U(0, 1), learning rate 0.01. Truncated SVD keeps the two largest singular values; the squared
# error of the best rank-2 approximation is the square of the dropped one.

# %%
svd = truncated_svd(A, 2)
s = np.linalg.svd(A, compute_uv=False)
runs = {seed: sgd_factorise(A, 2, epochs=EPOCHS, seed=seed) for seed in range(5)}
fig, ax = plt.subplots(figsize=(6, 3.5))
for seed, run in runs.items():
    ax.semilogy(np.arange(1, EPOCHS + 1), run.trace, lw=1, label=f"SGD, seed {seed}")
ax.axhline(svd.loss, color="k", ls="--", label="truncated SVD (the minimum)")
ax.set(xlabel="epoch", ylabel="squared error", title="rank-2 factorisation of the lab matrix")
ax.legend(fontsize=8)
plt.show()
print("singular values:", np.round(s, 4), f"-> SVD loss s_3^2 = {s[2] ** 2:.6f} (computed: {svd.loss:.6f})")
pd.DataFrame({"final SGD loss": {seed: run.loss for seed, run in runs.items()}}).assign(
    **{"SGD loss - SVD loss": lambda d: d["final SGD loss"] - svd.loss})

# %% [markdown]
# Every SGD run ends at or above the SVD's error, as Eckart-Young says it must; the gap closes as the epochs go on.

# %% [markdown]
# ## Completion: hide A[1, 0] and A[2, 1], fit on the seven others, compare the completed entries with the truth
#
# Masked SGD (the lab's variant, which skips hidden entries), ALS on the observed entries (the lecture's ridge
# solves), and SGD on random observed entries with the same ridge penalty. Truncated SVD cannot skip entries: it is
# shown with the hidden entries filled by the observed mean, the usual stopgap.

# %%
hidden = ~LAB_MASK
lam = 0.05
filled = np.where(LAB_MASK, A, A[LAB_MASK].mean())
completions = {
    "masked SGD (lab)": sgd_factorise(A, 2, epochs=EPOCHS * 3, mask=LAB_MASK).reconstruction,
    f"ALS, lambda = {lam}": als(A, 2, lam=lam, iters=500, mask=LAB_MASK).reconstruction,
    f"random-entry SGD, lambda = {lam}": sgd_random(A, 2, epochs=EPOCHS * 3, lam=lam, mask=LAB_MASK).reconstruction,
    "SVD of the mean-filled matrix": truncated_svd(filled, 2).reconstruction,
}
rows = {}
for name, R in completions.items():
    rows[name] = {"A[1,0] (true 3.3359)": R[1, 0], "A[2,1] (true 0.5301)": R[2, 1],
                  "RMSE on the 7 observed": np.sqrt(np.mean((R - A)[LAB_MASK] ** 2)),
                  "RMSE on the 2 hidden": np.sqrt(np.mean((R - A)[hidden] ** 2))}
pd.DataFrame(rows).T.round(4)

# %% [markdown]
# Seven entries and a rank-2 model with 2 x (3 + 3) = 12 parameters: the observed entries are fitted (nearly)
# exactly, and the hidden ones are not determined by them. What each method puts there comes from its start and
# its penalty; the ridge penalty pulls the factors, and the completed entries, towards zero. A 3 x 3 matrix is too
# small to tell the methods apart on completion: the next section uses a larger one.

# %% [markdown]
# ## ALS and random-entry SGD on one regularised objective
#
# Both minimise sum over the observed entries of (A_nm - u_n . v_m)^2 + lambda (sum |u_n|^2 + sum |v_m|^2). ALS
# solves for all of U, then all of V, exactly; SGD takes one random entry per step. A 60 x 40 matrix of rank 3
# plus noise (sd 0.1), 30% of its entries hidden; the objective per epoch (one epoch: one ALS sweep, or as many SGD
# steps as observed entries) and the RMSE on the hidden entries.

# %%
rng = np.random.default_rng(0)
B = rng.normal(size=(60, 3)) @ rng.normal(size=(3, 40)) + 0.1 * rng.normal(size=(60, 40))
mask = rng.random(B.shape) > 0.3
lam, n_ep = 1.0, (20 if QUICK else 100)
results = {}
t = time.perf_counter()
fit_als = als(B, 3, lam=lam, iters=n_ep, mask=mask)
results["ALS"] = (fit_als, time.perf_counter() - t)
for lr in (0.01, 0.03):
    t = time.perf_counter()
    fit = sgd_random(B, 3, epochs=n_ep, lr=lr, lam=lam, mask=mask)
    results[f"SGD, lr {lr}"] = (fit, time.perf_counter() - t)
fig, ax = plt.subplots(figsize=(6, 3.5))
# ALS's own trace is the unregularised loss; its objective per sweep is recomputed from a run of each length
als_obj = [ridge_objective(B, *als(B, 3, lam=lam, iters=i, mask=mask)[:2], lam, mask) for i in range(1, n_ep + 1, 5)]
ax.semilogy(np.arange(1, n_ep + 1, 5), als_obj, "o-", ms=3, label="ALS")
for name, (fit, _) in results.items():
    if name != "ALS":
        ax.semilogy(np.arange(1, n_ep + 1), fit.trace, label=name)
ax.set(xlabel="epoch", ylabel="regularised objective", title="60 x 40, rank 3, 30% hidden")
ax.legend()
plt.show()
pd.DataFrame({name: {"objective": ridge_objective(B, fit.U, fit.V, lam, mask),
                     "RMSE observed": np.sqrt(np.mean((fit.reconstruction - B)[mask] ** 2)),
                     "RMSE hidden": np.sqrt(np.mean((fit.reconstruction - B)[~mask] ** 2)),
                     "seconds": sec} for name, (fit, sec) in results.items()}).T.round(4)

# %% [markdown]
# ALS reaches the objective's minimum in a few sweeps; SGD needs many epochs and a step size chosen by hand (too
# small and it crawls, too large and it oscillates). Both recover the hidden entries to near the noise level
# (0.1) once they reach the same minimum. At scale the recommenders in `inference.baselines` (ALS-WR with tuned
# penalty, biased SGD) and the Bayesian models take over: see the MovieLens notebook.
