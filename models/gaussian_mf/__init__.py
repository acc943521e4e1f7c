"""Gaussian Bayesian matrix factorisation (ratings): the model with the fixed and BPMF priors (model.py), its
variational family, CAVI and SVI guide (vb.py), prediction and recommendations (prediction.py), and its registry
entry (spec.py)."""

from models._lazy import lazy_exports

__all__ = ["GaussianMF", "GibbsState", "VBState", "RatingData", "as_rating_data", "predict", "recommend",
           "heldout_scores", "draw_loglik", "sampled_nll", "RunningPredictive", "solve_rows"]

__getattr__, __dir__ = lazy_exports(__name__, {
    "GaussianMF": ".model", "GibbsState": ".model", "solve_rows": ".model", "VBState": ".vb",
    "predict": ".prediction", "recommend": ".prediction", "heldout_scores": ".prediction",
    "draw_loglik": ".prediction", "sampled_nll": ".prediction", "RunningPredictive": ".prediction",
    "RatingData": "models.data", "as_rating_data": "models.data"})
