"""inferlab inference: HOW a posterior is computed. One module per method, one signature:

    fit_<method>(model, data, *, seed, num_iters|num_samples, num_chains=1, init=None, device="cpu",
                 progress=True, callback=None) -> InferenceResult
"""

from inference.cavi import fit_cavi
from inference.em import fit_em
from inference.gibbs import fit_gibbs
from inference.nuts import fit_nuts
from inference.results import InferenceResult
from inference.svi import fit_svi

METHODS = {"cavi": fit_cavi, "gibbs": fit_gibbs, "svi": fit_svi, "nuts": fit_nuts, "em": fit_em}

__all__ = ["fit_cavi", "fit_em", "fit_gibbs", "fit_svi", "fit_nuts", "InferenceResult", "METHODS"]
