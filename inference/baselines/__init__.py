"""Point-estimate baselines the Bayesian models are measured against: the course lab's SGD, truncated SVD and ALS
(lab.py), and the recommenders biased SGD (Funk) and ALS-WR with a tuned penalty (recommenders.py)."""

from inference.baselines.lab import (LAB_MASK, LAB_MATRIX, Factorisation, als, ridge_objective, sgd_factorise,
                                    sgd_random, truncated_svd)
from inference.baselines.recommenders import RatingModel, als_sparse, funk_svd, tune_als

__all__ = ["LAB_MATRIX", "LAB_MASK", "Factorisation", "sgd_factorise", "sgd_random", "ridge_objective",
           "truncated_svd", "als", "RatingModel", "funk_svd", "als_sparse", "tune_als"]
