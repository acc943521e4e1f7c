"""inferlab inference: HOW a posterior is computed. One module per method, one signature:

    fit_<method>(model, data, *, seed, num_iters|num_samples, num_chains=1, init=None, dtype, device,
                 progress=True, callback=None, **method options) -> InferenceResult

Each method checks the model's capabilities (models.protocol) before it starts. The workflows built on the
methods (compare, calibration, selection, check_model, benchmarks) live in inference.workflows, the command line
in inference.cli. Names load on first use, so ``import inference`` is cheap.
"""

from collections.abc import Mapping

from models._lazy import lazy_exports

__all__ = ["fit_cavi", "fit_em", "fit_gibbs", "fit_svi", "fit_nuts", "fit_exact", "fit_bp", "fit_stochastic",
           "InferenceResult", "METHODS", "METHOD_NAMES", "check_model", "compare", "FitFailed"]

METHOD_NAMES = ("exact", "cavi", "gibbs", "svi", "nuts", "bp", "em", "stochastic")

_getattr, __dir__ = lazy_exports(__name__, {
    "fit_cavi": "inference.cavi", "fit_em": "inference.em", "fit_gibbs": "inference.gibbs",
    "fit_svi": "inference.svi", "fit_nuts": "inference.nuts", "fit_exact": "inference.exact", "fit_bp": "inference.bp",
    "fit_stochastic": "inference.stochastic",
    "InferenceResult": "inference.results", "check_model": "inference.workflows.checks",
    "compare": "inference.workflows.compare", "FitFailed": "inference.assemble"})


class _Methods(Mapping):
    """METHODS: method name -> fit function, each module imported when its method is first looked up (a CAVI fit
    does not import Pyro's NUTS)."""

    def __getitem__(self, name: str):
        if name not in METHOD_NAMES:
            raise KeyError(name)
        return _getattr(f"fit_{name}")

    def __iter__(self):
        return iter(METHOD_NAMES)

    def __len__(self) -> int:
        return len(METHOD_NAMES)


def __getattr__(name: str):
    if name == "METHODS":
        return _Methods()
    return _getattr(name)
