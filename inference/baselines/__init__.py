"""Point-estimate baselines the Bayesian models are measured against: the course lab's SGD, truncated SVD and ALS
(lab.py), and the recommenders biased SGD (Funk) and ALS-WR with a tuned penalty (recommenders.py)."""

from inference.baselines.lab import LAB_MASK, LAB_MATRIX, Factorisation, als, sgd_factorise, truncated_svd
from inference.baselines.recommenders import RatingModel, als_sparse, funk_svd, tune_als

__all__ = ["LAB_MATRIX", "LAB_MASK", "Factorisation", "sgd_factorise", "truncated_svd", "als", "RatingModel",
           "funk_svd", "als_sparse", "tune_als"]
