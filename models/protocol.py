"""The model protocol: what a model provides, capability by capability, and what each method needs.

A model is a frozen dataclass of hyperparameters (no data, no fitted state). It declares what it can do by the hooks
it implements; each hook group below is a runtime-checkable Protocol (a "capability"). Methods and workflows check
the capabilities they need before they start (:func:`require`) and raise one :class:`MissingCapability` error that
names every missing hook, instead of an AttributeError deep inside a run.

    capability          hooks                                                   needed by
    Model               name, sites, dims, hyperparameters(), prepare()         everything
    LogJoint            log_joint(data, *state)                                  Gibbs, EM, NUTS diagnostics
    Invariants          invariant_dims, invariants(data, **draws), coords(data)  every fit_* (identifiable summaries)
    Simulates           simulate(size, generator), resimulate(state, data, g)   SBC, Geweke, VSBC
    HeldOut             split(data, f, generator), heldout_score(result, ...)   compare
    PointwiseLogLik     pointwise_log_lik(data, **draws)                        ArviZ loo/waic (optional;
                        [pointwise_size(data): its entries per draw, where a one-draw probe is costly])
    CAVI                family, cavi_blocks, cavi_options, cavi_init, cavi_update, cavi_block, cavi_initial_elbo,
                        cavi_state_elbo, elbo, objective_attrs                   fit_cavi
    Gibbs               gibbs_init, gibbs_sweep                                  fit_gibbs, Geweke, SBC
    BatchedGibbs        gibbs_batched_chains, gibbs_init(..., num_chains)        fit_gibbs(batched=True) (optional)
    EM                  em_init, em_update                                       fit_em
    PyroModel           model(data), max_plate_nesting                          fit_nuts, fit_svi, check_model
    NUTSReparam         nuts_model, nuts_postprocess                             fit_nuts (optional)
    SVI                 family, guide(data, params), guide_constraints, guide_init, elbo, svi_elbo,
                        objective_attrs                                          fit_svi
    Conditionals        conditional_values, complete_conditionals                check_model (Gibbs derivations)
    Augmented           augmented_model, local_q                                 check_model (ELBOs with local z)
    PyroSites           to_pyro_sites, from_pyro_sites                           check_model (per-pixel Pyro sites)
    ExactInference      exact_marginals, log_partition, exact_sample            fit_exact (discrete models)
    MessagePassing      bp_schedules, messages_init, message_update, beliefs, bethe_free_energy   fit_bp

A variational family (the q that CAVI optimises and the SVI guide is written in) is one type, VariationalFamily:
draws, means, log density, and the conversions to and from the Pyro guide's parameters.

Conventions: ``state`` objects are NamedTuples of tensors whose field names are the model's site names (Gibbs, EM)
or, for CAVI, whose ``params`` field is the variational family instance q. Draws are dicts of tensors shaped
(..., *event), leading dimensions being chains and draws.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:  # annotations only: importing the protocol costs nothing
    import torch

__all__ = ["Model", "LogJoint", "Invariants", "Simulates", "HeldOut", "PointwiseLogLik", "VariationalFamily", "CAVI",
           "StochasticVI",
           "Gibbs", "BatchedGibbs", "EM", "PyroModel", "NUTSReparam", "SVI", "Conditionals", "Conditional",
           "Augmented", "PyroSites", "ExactInference", "MessagePassing", "MissingCapability", "require", "missing_hooks",
           "capabilities", "CAPABILITIES", "warm_gibbs_state"]


@runtime_checkable
class Model(Protocol):
    """The core of every model: a name, its latent sites and their dimension names, its hyperparameters, and the
    validation and conversion of user data (``prepare`` raises ValueError/TypeError naming the problem)."""

    name: str
    sites: tuple[str, ...]
    dims: dict[str, tuple[str, ...]]

    def hyperparameters(self) -> dict[str, Any]: ...

    def prepare(self, data: Any, *, dtype: torch.dtype = ..., device: str = "cpu") -> Any: ...


@runtime_checkable
class LogJoint(Protocol):
    """log p(latents, data) with every constant, where tractable; positional arguments are the state's fields,
    batched over leading dimensions."""

    def log_joint(self, data: Any, *state: torch.Tensor) -> torch.Tensor: ...


@runtime_checkable
class Invariants(Protocol):
    """Quantities that survive label switching and rotations (predicted entries, sorted means, the log joint):
    what diagnostics and cross-method agreement are computed on. ``invariant_dims`` names their event dims; the
    first non-scalar one is compared between methods. Optional: ``invariant_means(data, result)``, their exact
    means under a result that stores enough for them (marginals), else None (compare then uses the draws)."""

    invariant_dims: dict[str, tuple[str, ...]]

    def invariants(self, data: Any, **draws: torch.Tensor) -> dict[str, torch.Tensor]: ...

    def coords(self, data: Any) -> dict[str, Any]: ...


@runtime_checkable
class Simulates(Protocol):
    """Draws from the model: (state, data) from the prior and likelihood, and new data given a state (calibration)."""

    def simulate(self, size: tuple, generator: torch.Generator) -> tuple[Any, Any]: ...

    def resimulate(self, state: Any, data: Any, generator: torch.Generator) -> Any: ...


@runtime_checkable
class HeldOut(Protocol):
    """A held-out split of the data and a per-observation score of a fitted result on it."""

    def split(self, data: Any, test_fraction: float, generator: torch.Generator) -> tuple[Any, Any]: ...

    def heldout_score(self, result: Any, test: Any, test_fraction: float) -> dict[str, float]: ...


@runtime_checkable
class PointwiseLogLik(Protocol):
    """log p(y_i | theta) per observation and draw, for ArviZ's loo and waic. Optional companion hook:
    ``pointwise_size(data) -> int``, the entries per draw, where one draw of the array is costly to compute."""

    def pointwise_log_lik(self, data: Any, **draws: torch.Tensor) -> dict[str, torch.Tensor]: ...


@runtime_checkable
class VariationalFamily(Protocol):
    """The parameters of one q (a NamedTuple of tensors), the same family for CAVI and for the SVI guide."""

    def sample(self, num_samples: int, generator: torch.Generator) -> dict[str, torch.Tensor]: ...

    def mean(self) -> dict[str, torch.Tensor]: ...

    def log_prob(self, draws: dict[str, torch.Tensor]) -> torch.Tensor: ...

    def to_guide(self) -> dict[str, torch.Tensor]: ...

    @classmethod
    def from_guide(cls, params: dict[str, torch.Tensor]) -> Any: ...

    def to_dict(self) -> dict[str, torch.Tensor]: ...

    @classmethod
    def from_dict(cls, params: dict[str, Any]) -> Any: ...


@runtime_checkable
class CAVI(Protocol):
    """Closed-form coordinate ascent. ``cavi_blocks`` names the block updates of one sweep, in order;
    ``cavi_block(data, state, block)`` applies one; ``cavi_update`` is one sweep and returns the ELBO (every
    constant included), which never decreases. ``cavi_state_elbo(data, state)`` is the ELBO of a state as a
    differentiable function of its tensors (local factors such as responsibilities included; each block update
    must be a stationary point of it in the tensors the block changes). ``elbo(data, q)`` is the ELBO at q with
    any local factor at its optimum. ``cavi_options`` maps each model-specific option (passed as a keyword of
    fit_cavi) to its allowed values, the first being the default."""

    family: type
    cavi_blocks: tuple[str, ...]
    cavi_options: dict[str, tuple]

    def cavi_init(self, data: Any, generator: torch.Generator, **options: Any) -> Any: ...

    def cavi_initial_elbo(self, data: Any, state: Any, **options: Any) -> torch.Tensor: ...

    def cavi_update(self, data: Any, state: Any, **options: Any) -> tuple[Any, torch.Tensor]: ...

    def cavi_block(self, data: Any, state: Any, block: str) -> Any: ...

    def cavi_state_elbo(self, data: Any, state: Any) -> torch.Tensor: ...

    def elbo(self, data: Any, q: Any) -> torch.Tensor: ...

    def objective_attrs(self, data: Any, elbo: float) -> dict[str, float]: ...


@runtime_checkable
class StochasticVI(Protocol):
    """Closed-form stochastic variational inference on row blocks of the data (inference/stochastic.py): the
    constants of the data the ELBO and the steps need, from one pass over the blocks (``stochastic_constants``);
    the initial q; a private running state made from a q (``stochastic_start``, the caller's q is left alone); one
    iteration on a minibatch of rows with step rho (the local step, then the global parameters moved by rho towards
    their estimate from the batch); the finished q (``stochastic_finish``); the ELBO at the state over all blocks."""

    def stochastic_constants(self, blocks: Any) -> Any: ...

    def stochastic_init(self, blocks: Any, generator: torch.Generator) -> Any: ...

    def stochastic_start(self, q: Any, constants: Any) -> Any: ...

    def stochastic_step(self, blocks: Any, q: Any, rows: Any, rho: float, local_iters: int = 1) -> Any: ...

    def stochastic_finish(self, q: Any) -> Any: ...

    def stochastic_elbo(self, blocks: Any, q: Any, constants: Any) -> float: ...


@runtime_checkable
class Gibbs(Protocol):
    """Blocked Gibbs sampling: a starting state and one sweep through the complete conditionals."""

    def gibbs_init(self, data: Any, generator: torch.Generator) -> Any: ...

    def gibbs_sweep(self, data: Any, state: Any, generator: torch.Generator) -> Any: ...


@runtime_checkable
class BatchedGibbs(Protocol):
    """Gibbs over several chains at once: states with a leading chain dimension."""

    gibbs_batched_chains: bool

    def gibbs_init(self, data: Any, generator: torch.Generator, num_chains: int | None = None) -> Any: ...


@runtime_checkable
class EM(Protocol):
    """The posterior mode by EM (or iterated conditional modes): every update maximises the log joint in its block."""

    def em_init(self, data: Any, generator: torch.Generator) -> Any: ...

    def em_update(self, data: Any, state: Any) -> Any: ...


@runtime_checkable
class PyroModel(Protocol):
    """The model written in Pyro: sample sites named as ``sites`` (the automated methods' ground truth).
    ``max_plate_nesting`` is the number of nested plates (None: Pyro finds it; needed for enumeration)."""

    max_plate_nesting: int | None

    def model(self, data: Any) -> None: ...


@runtime_checkable
class NUTSReparam(Protocol):
    """A reparameterised Pyro model for NUTS and the map of its draws back to the model's sites."""

    def nuts_model(self, data: Any) -> None: ...

    def nuts_postprocess(self, samples: dict[str, torch.Tensor], data: Any) -> dict[str, torch.Tensor]: ...


@runtime_checkable
class SVI(Protocol):
    """A Pyro guide in the variational family: ``guide(data, params)`` with params from ``family.to_guide()``,
    their constraints, and the starting parameters. ``elbo(data, q)`` scores the final q in closed form; ``svi_elbo``
    names Pyro's estimator ("meanfield", "trace" or "enum")."""

    family: type
    guide_constraints: dict[str, Any]
    svi_elbo: str

    def guide(self, data: Any, params: dict[str, torch.Tensor]) -> None: ...

    def guide_init(self, data: Any, generator: torch.Generator) -> dict[str, torch.Tensor]: ...

    def elbo(self, data: Any, q: Any) -> torch.Tensor: ...

    def objective_attrs(self, data: Any, elbo: float) -> dict[str, float]: ...


class Conditional:
    """A complete conditional over one block of sites: ``sample(generator) -> {site: value}`` and
    ``log_prob({site: value}) -> ()`` (summed over the block), every constant included.

    ``Conditional.of(site, distribution)`` wraps a torch distribution over one site."""

    def __init__(self, sites: tuple[str, ...], sample, log_prob):
        self.sites, self._sample, self._log_prob = tuple(sites), sample, log_prob

    def sample(self, generator: torch.Generator) -> dict[str, torch.Tensor]:
        return self._sample(generator)

    def log_prob(self, values: dict[str, torch.Tensor]) -> torch.Tensor:
        return self._log_prob(values)

    @classmethod
    def of(cls, site: str, distribution: torch.distributions.Distribution) -> Conditional:
        import torch

        def sample(generator):
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(int(torch.randint(2 ** 62, (1,), generator=generator)))
                return {site: distribution.sample()}
        return cls((site,), sample, lambda v: distribution.log_prob(v[site]).sum())


@runtime_checkable
class Conditionals(Protocol):
    """The closed-form complete conditionals Gibbs samples from, for checking against the Pyro model.
    ``conditional_model`` is the Pyro model whose latent sites are exactly the keys of ``conditional_values`` (the
    augmented model when Gibbs samples local allocations). ``complete_conditionals(data, values)`` returns, per
    block, the conditional of that block given every other value."""

    def conditional_model(self, data: Any) -> None: ...

    def conditional_values(self, data: Any, generator: torch.Generator) -> dict[str, torch.Tensor]: ...

    def complete_conditionals(self, data: Any, values: dict[str, torch.Tensor]) -> dict[str, Conditional]: ...


@runtime_checkable
class Augmented(Protocol):
    """For a closed-form ELBO over an augmented model (local allocations z summed out by q(z)): the Pyro model with
    the local sites, and q's factor over them given the global q."""

    def augmented_model(self, data: Any) -> None: ...

    def local_q(self, data: Any, q: Any) -> Conditional: ...


@runtime_checkable
class ExactInference(Protocol):
    """Discrete models small enough for exact answers: the marginals of every site ({"marginals": ...}, with
    "log_Z" too where one pass gives both), log Z, and exact independent draws of the state's sites."""

    def exact_marginals(self, data: Any) -> dict[str, torch.Tensor]: ...

    def log_partition(self, data: Any) -> torch.Tensor: ...

    def exact_sample(self, data: Any, num_samples: int, generator: torch.Generator) -> torch.Tensor: ...


@runtime_checkable
class PyroSites(Protocol):
    """When the Pyro model names its sites differently from the model's ``sites`` (one site per pixel of a grid,
    say): the maps between the two, for the checks that compare them."""

    def to_pyro_sites(self, data: Any, values: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]: ...

    def from_pyro_sites(self, data: Any, values: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]: ...


@runtime_checkable
class MessagePassing(Protocol):
    """Sum-product message passing (loopy belief propagation): messages, one update under a schedule (returning
    the new messages and the largest change), the beliefs they imply ({"marginals": ...}) and the Bethe free
    energy; ``bp_schedules`` names the schedules."""

    bp_schedules: tuple[str, ...]

    def messages_init(self, data: Any) -> Any: ...

    def message_update(self, data: Any, messages: Any, schedule: str = "flooding",
                       damping: float = 0.0) -> tuple[Any, float]: ...

    def beliefs(self, data: Any, messages: Any) -> dict[str, torch.Tensor]: ...

    def bethe_free_energy(self, data: Any, messages: Any) -> torch.Tensor: ...


def warm_gibbs_state(model: Any, data: Any, generator: torch.Generator, sweeps: int = 3) -> Any:
    """A Gibbs state a few sweeps from the model's start: a typical point at which to check the conditionals (the
    usual ``conditional_values``)."""
    state = model.gibbs_init(data, generator)
    for _ in range(sweeps):
        state = model.gibbs_sweep(data, state, generator)
    return state


CAPABILITIES = (Model, LogJoint, Invariants, Simulates, HeldOut, PointwiseLogLik, CAVI, StochasticVI, Gibbs,
                BatchedGibbs, EM, PyroModel, NUTSReparam, SVI, Conditionals, Augmented, PyroSites, ExactInference,
                MessagePassing)


def _members(protocol: type) -> list[str]:
    """The hook names a Protocol declares (methods and annotated attributes), including its protocol bases."""
    names: list[str] = []
    for klass in reversed(protocol.__mro__):
        if klass in (object, Protocol) or not getattr(klass, "_is_protocol", False):
            continue
        for name in list(getattr(klass, "__annotations__", {})) + [k for k in vars(klass)]:
            if not name.startswith("_") and name not in names:
                names.append(name)
    return names


def missing_hooks(model: Any, protocol: type) -> list[str]:
    """The hooks of ``protocol`` that ``model`` lacks (empty when it implements the capability)."""
    return [name for name in _members(protocol) if not hasattr(model, name)]


def capabilities(model: Any) -> list[str]:
    """Names of the capabilities ``model`` implements."""
    return [p.__name__ for p in CAPABILITIES if not missing_hooks(model, p)]


class MissingCapability(TypeError, ValueError):
    """A model lacks the hooks a method needs. The message names the method, the model, each missing capability
    and its missing hooks."""


def require(model: Any, *protocols: type, method: str) -> None:
    """Raise :class:`MissingCapability` unless ``model`` implements every protocol in ``protocols``."""
    gaps = {p.__name__: missing_hooks(model, p) for p in protocols}
    gaps = {k: v for k, v in gaps.items() if v}
    if gaps:
        name = getattr(model, "name", type(model).__name__)
        detail = "; ".join(f"{cap} (missing {', '.join(hooks)})" for cap, hooks in gaps.items())
        raise MissingCapability(f"{method}: model {name!r} has no {' / '.join(gaps)}: it lacks {detail}. "
                                f"See models.protocol for what each capability needs.")
