"""Gaussian mixtures: the Bayesian spherical (Normal-Gamma, missing entries allowed) and full-covariance
(Normal-Wishart) mixtures on one CAVI / ELBO / Gibbs / EM skeleton (base.py), exact EM with missing entries beyond
the course (em_missing.py), and their registry entries (spec.py). The course's own K-means / EM live in
models.course.gmm."""

from models._lazy import lazy_exports

__all__ = ["BayesMixture", "BayesGMM", "BayesGMMFull", "NGParams", "NWParams", "MixtureData", "as_mixture_data"]

__getattr__, __dir__ = lazy_exports(__name__, {
    "BayesMixture": ".base", "BayesGMM": ".spherical", "NGParams": ".spherical", "BayesGMMFull": ".full",
    "NWParams": ".full", "MixtureData": "models.data", "as_mixture_data": "models.data"})
