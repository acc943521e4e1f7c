"""inferlab models: what each Bayesian latent-variable model IS (hyperparameters, Pyro model/guide,
closed-form conditionals, ELBO). How a posterior is computed lives in :mod:`inference`."""

from models.data import CountMatrix, as_count_matrix
from models.bayes_gmm import BayesGMM, as_mixture_data
from models.bayes_gmm_full import BayesGMMFull
from models.poisson_mf import PoissonMF

__all__ = ["CountMatrix", "as_count_matrix", "PoissonMF", "BayesGMM", "BayesGMMFull", "as_mixture_data"]
