"""The course lab's matrix-factorisation baselines: SGD (exactly its pseudo-code), its masked variant, truncated
SVD, and the lecture's ridge ALS (through inference.baselines.recommenders.als_sparse, the one ALS).

Notation: A (N, M) matrix; rank r (K); Omega the observed entries (a boolean mask, all True when complete);
U (N, r), V (M, r); loss = sum over Omega of (A_nm - U_n . V_m)^2.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch

__all__ = ["Factorisation", "sgd_factorise", "sgd_random", "truncated_svd", "als", "ridge_objective", "LAB_MATRIX",
           "LAB_MASK"]

# The course lab's 3 x 3 matrix (docs/REFERENCE.md section 2) and its masked version (A[1,0], A[2,1] hidden).
LAB_MATRIX = np.array([[0.3374, 0.6005, 0.1735], [3.3359, 0.0492, 1.8374], [2.9407, 0.5301, 2.2620]])
LAB_MASK = np.array([[True, True, True], [False, True, True], [True, False, True]])


class Factorisation(NamedTuple):
    """U (N, r), V (M, r), the loss over the observed entries, and the loss after each epoch/iteration."""

    U: np.ndarray
    V: np.ndarray
    loss: float
    trace: np.ndarray

    @property
    def reconstruction(self) -> np.ndarray:
        return self.U @ self.V.T


def _check(A, rank, mask):
    A = np.asarray(A, dtype=np.float64)
    if A.ndim != 2 or 0 in A.shape:
        raise ValueError(f"A must be a non-empty 2-D matrix, got shape {A.shape}")
    if isinstance(rank, bool) or not isinstance(rank, (int, np.integer)) or not 1 <= rank <= min(A.shape):
        raise ValueError(f"rank must be an integer in [1, {min(A.shape)}], got {rank!r}")
    mask = np.ones(A.shape, dtype=bool) if mask is None else np.asarray(mask, dtype=bool)
    if mask.shape != A.shape:
        raise ValueError(f"mask has shape {mask.shape}, A has {A.shape}")
    if not np.all(np.isfinite(A[mask])):
        raise ValueError("A must be finite on the observed entries")
    return A, mask


def _loss(A, U, V, mask) -> float:
    return float((((A - U @ V.T) ** 2)[mask]).sum())


def sgd_factorise(A: np.ndarray, rank: int, *, epochs: int = 1000, lr: float = 0.01, seed: int = 0,
                  mask: np.ndarray | None = None) -> Factorisation:
    """The course's SGD factorisation, exactly its pseudo-code: U, V ~ U(0, 1); each epoch visits the observed
    (r, c) in row-major order: e = A_rc - U_r . V_c; U_r += lr e V_c; V_c += lr e U_r (with the new U_r).

    A plain Python loop over entries, as in the lab (meant for small matrices). ``mask`` gives the masked
    variant (unobserved entries are skipped). Randomness: a torch.Generator seeded with ``seed``.
    """
    A, mask = _check(A, rank, mask)
    g = torch.Generator().manual_seed(seed)
    U = torch.rand(A.shape[0], rank, generator=g, dtype=torch.float64).numpy()
    V = torch.rand(A.shape[1], rank, generator=g, dtype=torch.float64).numpy()
    entries = list(zip(*np.nonzero(mask)))  # row-major order
    trace = []
    for _ in range(epochs):
        for r, c in entries:
            e = A[r, c] - U[r] @ V[c]
            U[r] = U[r] + lr * e * V[c]
            V[c] = V[c] + lr * e * U[r]
        trace.append(_loss(A, U, V, mask))
    return Factorisation(U, V, trace[-1] if trace else _loss(A, U, V, mask), np.array(trace))


def ridge_objective(A: np.ndarray, U: np.ndarray, V: np.ndarray, lam: float, mask: np.ndarray | None = None) -> float:
    """The lecture's regularised objective, the one ALS minimises block by block and ``sgd_random`` by entries:
    sum over Omega of (A_nm - u_n . v_m)^2 + lam (sum_n |u_n|^2 + sum_m |v_m|^2)."""
    A, mask = _check(A, U.shape[1], mask)
    return _loss(A, U, V, mask) + lam * (float((U ** 2).sum()) + float((V ** 2).sum()))


def sgd_random(A: np.ndarray, rank: int, *, epochs: int = 200, lr: float = 0.01, lam: float = 0.1, seed: int = 0,
               mask: np.ndarray | None = None) -> Factorisation:
    """SGD on the regularised objective (``ridge_objective``) by random entries: each step draws one observed
    (n, m) uniformly from Omega and follows that entry's share of the gradient (the factor 2 absorbed in lr):

        e = A_nm - u_n . v_m
        u_n += lr (e v_m - lam / |Omega_n| u_n),   v_m += lr (e u_n - lam / |Omega^m| v_m)
    (both from the old u_n, v_m)

    |Omega_n| (|Omega^m|) counts the observed entries of row n (column m), so the expected step is the full
    gradient of sum_Omega (A_nm - u_n . v_m)^2 + lam (sum |u_n|^2 + sum |v_m|^2) divided by |Omega|: the same
    objective as ``als`` with the same lam. An epoch is |Omega| steps; the trace holds the regularised objective
    after each epoch and ``loss`` the unregularised loss over Omega. U, V start U(0, 1) like ``sgd_factorise``."""
    A, mask = _check(A, rank, mask)
    if not lam >= 0:
        raise ValueError(f"lam must be >= 0, got {lam!r}")
    if not lr > 0:
        raise ValueError(f"lr must be > 0, got {lr!r}")
    g = torch.Generator().manual_seed(seed)
    U = torch.rand(A.shape[0], rank, generator=g, dtype=torch.float64).numpy()
    V = torch.rand(A.shape[1], rank, generator=g, dtype=torch.float64).numpy()
    rows, cols = np.nonzero(mask)
    per_row, per_col = np.maximum(mask.sum(1), 1), np.maximum(mask.sum(0), 1)
    trace = []
    for _ in range(epochs):
        picks = torch.randint(len(rows), (len(rows),), generator=g).numpy()
        for i in picks:
            n, m = rows[i], cols[i]
            e = A[n, m] - U[n] @ V[m]
            U[n], V[m] = (U[n] + lr * (e * V[m] - lam / per_row[n] * U[n]),
                          V[m] + lr * (e * U[n] - lam / per_col[m] * V[m]))
        trace.append(ridge_objective(A, U, V, lam, mask))
    return Factorisation(U, V, _loss(A, U, V, mask), np.array(trace))


def truncated_svd(A: np.ndarray, rank: int) -> Factorisation:
    """Best rank-r approximation (Eckart-Young): U = U_r S_r, V = V_r; loss = sum of the dropped s_i^2."""
    A, mask = _check(A, rank, None)
    Us, s, Vt = np.linalg.svd(A, full_matrices=False)
    U, V = Us[:, :rank] * s[:rank], Vt[:rank].T
    loss = _loss(A, U, V, mask)
    return Factorisation(U, V, loss, np.array([loss]))


def als(A: np.ndarray, rank: int, *, lam: float = 0.1, iters: int = 50, seed: int = 0,
        mask: np.ndarray | None = None) -> Factorisation:
    """The lecture's alternating ridge least squares on the observed entries:
    u_n = (sum_{m in Omega_n} v_m v_m^T + lam I)^-1 sum_{m in Omega_n} A_nm v_m, then v_m symmetrically, from
    V ~ U(0, 1). It is ``als_sparse`` without centring, biases or count weighting; the trace holds the loss over
    the observed entries after each sweep."""
    from inference.baselines.recommenders import als_sparse
    from models.data import as_rating_data

    A, mask = _check(A, rank, mask)
    if not lam > 0:
        raise ValueError(f"lam must be > 0, got {lam!r}")
    fit = als_sparse(as_rating_data(np.where(mask, A, np.nan)), rank, lam=lam, weighted=False, biases=False,
                     iters=iters, seed=seed, center=False, init="uniform")
    n = int(mask.sum())
    return Factorisation(fit.P, fit.Q, _loss(A, fit.P, fit.Q, mask), n * np.asarray(fit.trace) ** 2)
