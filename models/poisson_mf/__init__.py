"""Poisson-gamma matrix factorisation (counts): the model (model.py), its variational family and CAVI (vb.py),
what users do with a fit (products.py), hierarchical Poisson factorisation (hierarchical.py) and the registry entries
of both (spec.py)."""

from models._lazy import lazy_exports

__all__ = ["PoissonMF", "GibbsState", "PoissonMFParams", "Allocation", "CaviState", "recommend", "factor_top_items",
           "expected_rates", "expected_total_rate", "recall_at_k", "HierarchicalPoissonMF", "HPFState", "HPFParams"]

__getattr__, __dir__ = lazy_exports(__name__, {
    "PoissonMF": ".model", "GibbsState": ".model",
    "PoissonMFParams": ".vb", "Allocation": ".vb", "CaviState": ".vb",
    "recommend": ".products", "factor_top_items": ".products", "expected_rates": ".products",
    "expected_total_rate": ".products", "recall_at_k": ".products",
    "HierarchicalPoissonMF": ".hierarchical", "HPFState": ".hierarchical", "HPFParams": ".hierarchical"})
