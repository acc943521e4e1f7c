"""Grid Markov random fields (pairwise, 4-neighbour, K ordered labels) for image denoising: the model, Gibbs, ICM and
the Pyro model (model.py), mean field (vb.py), loopy belief propagation (bp.py), exact inference (exact.py), label
images (images.py) and the registry entry (spec.py)."""

from models._lazy import lazy_exports

__all__ = ["GridMRF", "GridData", "as_grid_data", "GridQ", "Messages", "spiral", "add_noise", "COURSE_SMALL",
           "marginals_of"]

__getattr__, __dir__ = lazy_exports(__name__, {
    "GridMRF": ".model", "GridData": ".model", "as_grid_data": ".model", "marginals_of": ".model", "GridQ": ".vb",
    "Messages": ".bp", "spiral": ".images", "add_noise": ".images", "COURSE_SMALL": ".images"})
