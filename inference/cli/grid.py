"""inferlab grid small: the course's 3 x 3 example, P(y_ij = 1) by exact inference, by mean field in the course's
order, and by loopy BP, printed at full precision (repr) to compare with the course's published values."""

from __future__ import annotations

import argparse

from inference.cli.common import nonneg_int, positive_int

__all__ = ["add_parsers"]


def _rows(m) -> str:
    return "\n".join("  [" + ", ".join(repr(float(v)) for v in row) + "]" for row in m)


def cmd_grid(args: argparse.Namespace) -> int:
    from inference.bp import fit_bp
    from inference.cavi import fit_cavi
    from inference.exact import fit_exact
    from models.grid.images import COURSE_SMALL
    from models.grid.model import GridMRF

    if args.label not in (0, 1):
        raise ValueError(f"--label must be 0 or 1 (K = 2), got {args.label}")
    model, k = GridMRF.course(2), args.label
    exact = fit_exact(model, COURSE_SMALL, num_samples=1, progress=False)
    mf = fit_cavi(model, COURSE_SMALL, seed=0, schedule="raster", init="uniform", num_iters=args.iters, tol=0.0,
                  num_samples=1, progress=False)
    bp = fit_bp(model, COURSE_SMALL, schedule=args.schedule, num_iters=args.iters, tol=1e-15, num_samples=1,
                progress=False)
    print("The course's `small` example: 3 x 3, x = [[0,0,0],[0,0,0],[1,1,1]], K = 2, phi_ij(k) = 10 [x_ij = k], "
          "theta = 10 (same label) / 2 (labels one apart) / 0")
    print(f"\nexact marginals P(y_ij = {k}) (transfer matrix; log Z = {exact.attrs['log_partition']!r}):")
    print(_rows(exact.point["marginals"][..., k]))
    print(f"\nmean-field lambda_ij^{k} (the course's order: lambda = 1/K, raster order, in place; "
          f"{mf.attrs['num_iters']} sweeps, {'converged' if mf.attrs['converged'] else 'NOT converged'}; "
          f"ELBO = {float(mf.trace['objective'][-1])!r}):")
    print(_rows(mf.point["marginals"][..., k]))
    print(f"\nloopy BP beliefs b_ij({k}) ({args.schedule}, {bp.attrs['num_iters']} iterations, "
          f"{'converged' if bp.attrs['converged'] else 'NOT converged'}; -F_Bethe = "
          f"{float(bp.trace['objective'][-1])!r}):")
    print(_rows(bp.point["marginals"][..., k]))
    return 0 if mf.attrs["converged"] and bp.attrs["converged"] else 1


def add_parsers(sub) -> None:
    g = sub.add_parser("grid", help="grid MRF: the course's 3 x 3 example by exact, mean-field and loopy BP")
    g.add_argument("example", choices=["small"], help="small: the course's 3 x 3 example")
    g.add_argument("--label", type=nonneg_int, default=1, help="the label whose probabilities are printed (default 1)")
    g.add_argument("--schedule", default="flooding", choices=["flooding", "sequential"], help="loopy BP schedule")
    g.add_argument("--iters", type=positive_int, default=1000, help="most sweeps / iterations (run to convergence)")
    g.set_defaults(func=cmd_grid)
