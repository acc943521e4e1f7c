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
# # Grid Markov random fields: exact, mean-field, loopy BP and Gibbs, and image denoising
#
# The course's HW4 model: a pairwise MRF on an H x W grid with K ordered labels,
# p(y) ∝ exp(sum_a phi_a(y_a) + sum_{(a,b) in E} theta(y_a, y_b)), with node log-potentials
# phi_a(k) = 10 [x_a = k] for a noisy label image x and the edge table theta(k1, k2) = 10 (same label),
# 2 (labels one apart), 0 otherwise.
#
# 1. The updates, written next to the code that runs them.
# 2. The course's 3 x 3 `small` example: exact marginals vs mean field vs loopy BP.
# 3. Denoising a spiral image with every method; accuracy, objectives per sweep, time.
#
# `INFERLAB_NB_QUICK=1` runs a small version (the test suite does).

# %%
import os

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch

from inference import check_model, fit_bp, fit_cavi, fit_em, fit_exact, fit_gibbs
from inference.workflows.speed import sweep_times
from models.grid import GridMRF
from models.grid.images import COURSE_SMALL
from models.grid.model import marginals_of
from models.grid.spec import load_spiral

QUICK = os.environ.get("INFERLAB_NB_QUICK") == "1"
model = GridMRF.course(2)
print(model)

# %% [markdown]
# ## 1. The updates
#
# **Mean field** (models/grid/vb.py, eq. 3): with q(y) = prod_a Cat(lambda_a),
# log lambda_a(k) = phi_a(k) + sum_{b in N(a)} sum_k2 lambda_b(k2) theta(k, k2) + const.
# The course visits the pixels in raster order, updating lambda in place, from lambda = 1/K. One such sweep on
# `small`, by hand, next to the library's `schedule="raster"` sweep:

# %%
data = model.prepare(COURSE_SMALL)
phi, theta = data.phi.numpy(), np.array(model.theta)
lam = np.full((3, 3, 2), 0.5)
for i in range(3):
    for j in range(3):
        field = sum(lam[a, b] for a, b in ((i - 1, j), (i + 1, j), (i, j - 1), (i, j + 1)) if 0 <= a < 3 and 0 <= b < 3)
        logits = phi[i, j] + theta @ field
        lam[i, j] = np.exp(logits - np.logaddexp.reduce(logits))
state, elbo = model.cavi_update(data, model.cavi_init(data, None), schedule="raster")
print("by hand, lambda^1 after one sweep:\n", lam[..., 1])
print("largest difference from the library's sweep:", np.abs(torch.softmax(state.params.log_lam, -1).numpy() - lam).max())

# %% [markdown]
# **Loopy BP** (models/grid/bp.py): log m_{a->b}(k') = logsumexp_k [phi_a(k) + sum_{c in N(a)\b} log m_{c->a}(k) +
# theta(k, k')], beliefs b_a ∝ exp(phi_a + sum of the incoming messages), and the Bethe free energy F, whose
# negative approximates log Z (exactly on chains and trees).
#
# **Exact** (models/grid/exact.py): forward-backward over rows with K^W row states (the transfer matrix), for
# grids whose shorter side is small.
#
# The derivation checks (`check_model`) compare each closed-form piece with the Pyro model
# (one categorical site per pixel, the potentials through `pyro.factor`); on weak potentials, where the checks can
# see something:

# %%
print(check_model(GridMRF(K=2, theta=0.5, node_strength=1.0), checks=("conditional", "cavi-sweep", "cavi-block",
                                                                      "elbo-mc", "guide", "em-stationary")))

# %% [markdown]
# ## 2. The course's small 3 x 3 example three ways
#
# The same numbers at full precision: `inferlab grid small`.

# %%
exact = fit_exact(model, COURSE_SMALL, progress=False)
mf = fit_cavi(model, COURSE_SMALL, seed=0, schedule="raster", init="uniform", num_iters=100, tol=0.0,
              progress=False)
bp = fit_bp(model, COURSE_SMALL, num_iters=100, tol=1e-15, progress=False)
rows = []
for name, res in (("exact", exact), ("mean field (raster)", mf), ("loopy BP (flooding)", bp)):
    p1 = np.asarray(res.point["marginals"])[..., 1]
    rows.append({"method": name, "objective": res.attrs["objective_name"], "value": float(res.trace["objective"][-1]),
                 **{f"P(y{i}{j}=1)": p1[i, j] for i in range(3) for j in range(3) if j == 1 or i == 2}})
pd.set_option("display.precision", 10)
pd.DataFrame(rows)

# %% [markdown]
# The ELBO is below log Z (mean field is a lower bound); -F_Bethe matches log Z to about 1e-14 here, and the BP
# beliefs match the exact marginals to about 1e-14 in absolute terms even though the grid has loops (the relative
# error of the 1e-12 probabilities is about 1e-3). Mean field is over-confident: it puts 0.99995 on the bottom
# corners where the exact marginal is 0.99748.

# %%
fig, axes = plt.subplots(1, 3, figsize=(10, 3))
for ax, (name, res) in zip(axes, (("exact", exact), ("mean field", mf), ("loopy BP", bp))):
    p1 = np.asarray(res.point["marginals"])[..., 1]
    im = ax.imshow(np.log10(np.minimum(p1, 1 - p1)), vmin=-16, vmax=0, cmap="magma")
    ax.set_title(f"{name}: log10 min(P1, P0)", fontsize=9)
    ax.set_xticks([])
    ax.set_yticks([])
fig.colorbar(im, ax=axes, shrink=0.8)
plt.show()

# %% [markdown]
# ## 3. Denoising a spiral
#
# Five interleaved spiral arms; 20% of the pixels replaced by a uniform random label (fixed seed).

# %%
size = 64 if QUICK else 256
spiral_data = load_spiral(K=5, size=size, noise=0.2, seed=0)
model5 = GridMRF.course(5)
data5 = model5.prepare(spiral_data)
fits = {"mean field (CAVI)": fit_cavi(model5, data5, seed=0, num_iters=100, tol=1e-12, progress=False),
        "loopy BP": fit_bp(model5, data5, num_iters=100, tol=1e-8, progress=False),
        "Gibbs (4 chains)": fit_gibbs(model5, data5, seed=0, num_samples=100 if QUICK else 400,
                                      warmup=50 if QUICK else 200, num_chains=4, progress=False),
        "ICM (MAP baseline)": fit_em(model5, data5, seed=0, num_iters=50, num_restarts=1, progress=False)}
clean = data5.clean.numpy()
accuracy = {"noisy image": float((data5.x.numpy() == clean).mean())}
accuracy.update({name: model5.heldout_score(res, data5, 0.0)["accuracy"] for name, res in fits.items()})
pd.Series(accuracy, name="accuracy vs the clean image").to_frame()

# %%
panels = [("clean", clean), ("noisy x", data5.x.numpy())] + \
    [(f"{n}\n{accuracy[n]:.4f}", marginals_of(r, model5, data5).argmax(-1)) for n, r in fits.items()]
fig, axes = plt.subplots(2, 3, figsize=(10, 7))
for ax, (title, image) in zip(axes.flat, panels):
    ax.imshow(image, cmap="viridis", vmin=0, vmax=4, interpolation="nearest")
    ax.set_title(title, fontsize=9)
    ax.axis("off")
plt.show()

# %% [markdown]
# The objective of each iterative method per sweep (ELBO, -F_Bethe; the log joint of the Gibbs draws and of
# ICM's labels), and the gap to its final value:

# %%
fig, (ax, gap) = plt.subplots(1, 2, figsize=(11, 4))
for name, res in fits.items():
    obj = np.asarray(res.trace["objective"], dtype=float)
    obj = obj[0] if obj.ndim == 2 else obj       # Gibbs: chain 0
    ax.plot(obj, label=name)
    if len(obj) > 1:
        gap.semilogy(np.maximum(np.abs(obj[:-1] - obj[-1]), 1e-16), label=name)
ax.set(xlabel="sweep", ylabel="objective", ylim=(np.nanmax([np.asarray(r.trace["objective"]).max()
                                                            for r in fits.values()]) * 0.98, None))
gap.set(xlabel="sweep", ylabel="|objective - final|")
ax.legend(fontsize=8)
plt.show()

# %% [markdown]
# Gibbs from random labels under theta = 10 forms domains that dissolve slowly; its R-hat says so (infinite where a
# pixel never changed within any chain while the chains disagree on it):

# %%
from inference.results import rhat  # noqa: E402

print("largest R-hat of the tracked pixels' labels:", float(np.nanmax(rhat(fits["Gibbs (4 chains)"].posterior["onehot"]))))

# %% [markdown]
# ## Time per sweep
#
# Median milliseconds of one update of each method on this image (float64); `inferlab benchmark grid-mrf --size
# 256 512 1024` gives the full table.

# %%
pd.DataFrame(sweep_times(model5, data5, ("cavi", "bp", "gibbs", "em"), repeats=3 if QUICK else 10))
