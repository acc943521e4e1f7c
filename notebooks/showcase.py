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
# # One model fitted every way, with its diagnostics
#
# What `make demo` runs, as a notebook: Poisson matrix factorisation of a small synthetic count matrix (20 x 30,
# K = 3) fitted by CAVI, Gibbs, Pyro's SVI and NUTS (not in a quick build), and EM (a posterior mode), on the same
# 90% of every count
# (binomial thinning), compared on their objective, held-out fit, time, agreement with the reference sampler on
# the identifiable rates, and sampler diagnostics. Then the checks that make the hand derivations trustworthy:
# simulation-based calibration (SBC) of the Gibbs sampler, and the diagnostics of a Bayesian mixture whose
# components switch labels. `INFERLAB_NB_QUICK=1` runs short chains (CI does); the full build runs `make demo`'s.

# %%
import os
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from IPython.display import Image, Markdown, display

from inference import fit_gibbs
from inference.workflows.calibration import sbc
from inference.workflows.compare import compare, reference_warning
from inference.workflows.relabel import relabel_mixture
from inference.results import rhat
from models import BayesGMM, registry
from models.datasets import load_netflix

QUICK = os.environ.get("INFERLAB_NB_QUICK") == "1"
spec = registry.get("poisson-mf")

# %% [markdown]
# ## Every method on one model (the demo)

# %%
model = spec.make(K=3)
data = spec.synthetic(*spec.synthetic_size, 3, torch.Generator().manual_seed(0))
settings = {k: dict(v) for k, v in spec.compare_settings.items()}
if QUICK:
    settings = {"cavi": {"num_iters": 50}, "svi": {"num_iters": 300}, "em": {"num_iters": 50},
                "gibbs": {"num_samples": 100, "warmup": 100, "num_chains": 2}}
methods = ("cavi", "gibbs", "svi", "em") if QUICK else ("cavi", "gibbs", "svi", "nuts", "em")  # (quick: no NUTS)
out = Path("compare-out")
comp = compare(model, data, methods=methods, seed=0, settings=settings, out=out, progress=False, overwrite=True)
print(f"{model}; data {data}; reference: {comp.reference}")
for line in filter(None, reference_warning(comp)):
    print(line.replace("**", ""))
cols = ["method", "objective", "value", "heldout_loglik_per_count", "wall_s", "min_ess", "max_rhat", "psis_khat"]
comp.table[[c for c in cols if c in comp.table]].round(4)

# %%
agree = [c for c in comp.table.columns if "_vs_" in c]
comp.table.set_index("method")[agree].round(4)

# %% [markdown]
# The objective of each method per iteration (CAVI's ELBO rises monotonically; SVI's is a noisy estimate; the
# samplers' log joint settles after warm-up), and each method's posterior mean rates against the reference's.

# %%
display(Image(filename=str(out / "traces.png")), Image(filename=str(out / "agreement.png")))

# %% [markdown]
# Sampler diagnostics on the rates: trace plots and rank plots (uniform ranks across chains mean the chains mix),
# and the posterior sd of each method relative to the reference's (mean field's are smaller).

# %%
for name in ("gibbs_trace.png", "gibbs_rank.png", "nuts_rank.png", "sd_ratio.png", "factor_trace.png"):
    if (out / name).exists():
        display(Markdown(f"**{name.removesuffix('.png').replace('_', ' ')}**"), Image(filename=str(out / name)))

# %% [markdown]
# ## Simulation-based calibration of the Gibbs sampler
#
# Draw parameters from the prior, data from the model, run the sampler, and rank each true value among its
# posterior draws; if the sampler is right the ranks are uniform (Talts et al. 2018). A derivation bug (a wrong
# shape or rate in a conditional) shows as a U, a hump or a slope. The p-values are chi-square tests of
# uniformity, Bonferroni-corrected over the quantities.

# %%
cal = spec.calibration
cmodel = spec.calibration_model()
if QUICK:  # a few short replications (the ranks then say little; the full build runs 100 of 99 draws each)
    result = sbc(cmodel, "gibbs", num_replications=10, size=cal.size, num_draws=19, warmup=50, thin=2, seed=0,
                 progress=False)
else:
    result = sbc(cmodel, "gibbs", num_replications=100, size=cal.size, num_draws=99, warmup=cal.warmup,
                 thin=cal.thin, seed=0, progress=False)
fig = result.plot()
plt.show()
print(f"{cmodel}: {len(next(iter(result.ranks.values())))} replications, "
      f"smallest Bonferroni p-value {result.min_pvalue_bonferroni:.3f}")

# %% [markdown]
# ## A Bayesian mixture whose labels switch: raw against relabelled diagnostics
#
# A 3-component Bayesian Gaussian mixture on the MITx toy data, 4 Gibbs chains. The posterior is symmetric under
# permutations of the components, so different chains label them differently and R-hat on the raw component
# means is meaningless. Relabelling (Stephens' algorithm, on the classification probabilities) maps every draw to
# one labelling; then R-hat and ESS mean what they usually do.

# %%
toy = load_netflix("toy")
gmm_model = BayesGMM(K=3)
gmm_fit = fit_gibbs(gmm_model, toy, seed=0, num_samples=100 if QUICK else 1000, warmup=50 if QUICK else 500,
                    num_chains=4, progress=False)
rel = relabel_mixture(gmm_model, toy, gmm_fit, "stephens")
raw_mu = np.asarray(gmm_fit.posterior["mu"])
fig, axes = plt.subplots(1, 2, figsize=(13, 3.8), sharey=True)
for ax, draws, title in ((axes[0], raw_mu, "raw"), (axes[1], rel.draws["mu"], "relabelled (Stephens)")):
    for c in range(draws.shape[0]):
        for k in range(draws.shape[2]):
            ax.plot(draws[c, :, k, 0], lw=0.5, color=plt.get_cmap("tab10")(k), alpha=0.7)
    ax.set(title=f"mu[k, 0], 4 chains: {title}", xlabel="draw")
plt.show()
names = [f"mu[{k}, {j}]" for k in range(3) for j in range(2)]
pd.DataFrame({"raw": [float(rhat(raw_mu[..., k, j])) for k in range(3) for j in range(2)],
              "relabelled": [float(rhat(rel.draws["mu"][..., k, j])) for k in range(3) for j in range(2)]},
             index=pd.Index(names, name="R-hat of")).round(4)

# %% [markdown]
# Within a chain the labels rarely switch here (the components are well separated); the chains disagree on the
# labelling, which is what inflates the raw R-hat. After relabelling, every component's summary:

# %%
print(f"label switches per chain: {rel.switches.tolist()}")
rel.summary.round(3)
