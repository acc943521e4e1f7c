"""inferlab models: what each Bayesian latent-variable model IS (hyperparameters, Pyro model and guide, closed-form
conditionals, variational family, ELBO). How a posterior is computed lives in :mod:`inference`.

    models.protocol    the capabilities a model implements and the methods that need them
    models.registry    the one table of models (name -> class, data sets, defaults, calibration sizes)
    models.data        data containers on one base; models.datasets the real data sets
    models.conjugate   the shared conjugate maths
    models.poisson_mf, models.gaussian_mf, models.mixture   the model families
    models.course      the course's algorithms reproduced exactly

Importing this package is cheap: the names below are loaded on first use.
"""

from models._lazy import lazy_exports

__all__ = ["PoissonMF", "HierarchicalPoissonMF", "GaussianMF", "BayesGMM", "BayesGMMFull", "CountMatrix", "RatingData", "MixtureData",
           "as_count_matrix", "as_rating_data", "as_mixture_data", "registry", "protocol", "datasets"]

__getattr__, __dir__ = lazy_exports(__name__, {
    "PoissonMF": "models.poisson_mf.model", "HierarchicalPoissonMF": "models.poisson_mf.hierarchical",
    "GaussianMF": "models.gaussian_mf.model",
    "BayesGMM": "models.mixture.spherical", "BayesGMMFull": "models.mixture.full",
    "CountMatrix": "models.data", "RatingData": "models.data", "MixtureData": "models.data",
    "as_count_matrix": "models.data", "as_rating_data": "models.data", "as_mixture_data": "models.data",
    "registry": "models.registry", "protocol": "models.protocol", "datasets": "models.datasets"})
