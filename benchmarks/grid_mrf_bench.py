"""Grid MRF speed: inferlab's mean-field, loopy-BP and Gibbs updates against straightforward vectorised NumPy
implementations (written here, one array operation per term of the update), timed in the same run.

    python benchmarks/grid_mrf_bench.py [--size 256 512 1024] [-K 5] [--repeats 10] [--no-numpy]

Prints one markdown table: per image size and method, inferlab's median ms per sweep / iteration (quartiles), the
NumPy version's median, their ratio, ns per pixel (linear scaling reads as a constant column), and the issue's
goal at 256 x 256 (mean field <= 8 ms, loopy BP <= 25 ms, Gibbs <= 20 ms; float64). The NumPy versions are checked
against inferlab's on the same input before they are timed. `inferlab benchmark grid-mrf` prints inferlab's column
alone.
"""

from __future__ import annotations

import argparse
import statistics

import numpy as np
import torch
from scipy.special import logsumexp

from inference.workflows.speed import sweep_times, time_steps
from models.grid.lattice import checkerboard
from models.grid.model import GridMRF
from models.grid.spec import load_spiral

GOALS_256 = {"cavi": 8.0, "bp": 25.0, "gibbs": 20.0}


def neighbour_sum(v):
    out = np.zeros_like(v)
    out[1:] += v[:-1]
    out[:-1] += v[1:]
    out[:, 1:] += v[:, :-1]
    out[:, :-1] += v[:, 1:]
    return out


def numpy_mean_field_sweep(phi, theta, lam, black):
    """Black then white: lambda = softmax(phi + (sum of the neighbours' lambda) theta), (H, W, K) arrays."""
    for colour in (black, ~black):
        logits = phi + neighbour_sum(lam) @ theta
        new = np.exp(logits - logsumexp(logits, axis=-1, keepdims=True))
        lam = np.where(colour[..., None], new, lam)
    return lam


# direction: (receivers, senders, the message into the sender that its cavity leaves out)
ROUTES = {"left": ((slice(None), slice(1, None)), (slice(None), slice(None, -1)), "right"),
          "right": ((slice(None), slice(None, -1)), (slice(None), slice(1, None)), "left"),
          "up": ((slice(1, None), slice(None)), (slice(None, -1), slice(None)), "down"),
          "down": ((slice(None, -1), slice(None)), (slice(1, None), slice(None)), "up")}


def numpy_bp_flooding(phi, theta, msgs):
    """Every message from the old ones: log m(k') = logsumexp_k [cavity(k) + theta(k, k')], normalised; messages
    msgs[d] (H, W, K) arrive at each pixel from its d neighbour (0 where none does)."""
    total = phi + sum(msgs.values())
    new = {}
    for d, (to, frm, back) in ROUTES.items():
        cavity = total[frm] - msgs[back][frm]
        m = logsumexp(cavity[..., :, None] + theta, axis=-2)
        out = np.zeros_like(phi)
        out[to] = m - logsumexp(m, axis=-1, keepdims=True)
        new[d] = out
    return new


def numpy_gibbs_sweep(phi, theta, y, black, rng):
    """Black then white, each pixel from softmax(phi + sum over neighbours of theta(., y_b)) by Gumbel-max."""
    K = phi.shape[-1]
    for colour in (black, ~black):
        logits = phi + neighbour_sum(np.eye(K)[y]) @ theta
        draw = np.argmax(logits - np.log(-np.log(rng.random(logits.shape))), -1)
        y = np.where(colour, draw, y)
    return y


def numpy_steps(model, data):
    """The NumPy versions as steps (state kept across calls), after checking each against inferlab's update."""
    phi, theta = data.phi.numpy(), np.array(model.theta)
    black = checkerboard(*data.shape).numpy()
    K = model.K
    lam = np.full(phi.shape, 1.0 / K)
    state = model.cavi_init(data, None)
    ours, _ = model.cavi_update(data, state)
    assert np.allclose(numpy_mean_field_sweep(phi, theta, lam, black), torch.softmax(ours.params.log_lam, -1).numpy(),
                       atol=1e-12), "the NumPy mean-field sweep does not match"
    msgs = {d: np.zeros_like(phi) for d in ROUTES}
    for d, (to, _, _) in ROUTES.items():
        msgs[d][to] = -np.log(K)
    m, _ = model.message_update(data, model.messages_init(data))
    new = numpy_bp_flooding(phi, theta, msgs)
    assert all(np.allclose(new[d], getattr(m, f"from_{d}").permute(1, 2, 0).numpy(), atol=1e-12) for d in ROUTES), \
        "the NumPy BP iteration does not match"
    rng = np.random.default_rng(0)
    cur = {"lam": lam, "msgs": msgs, "y": rng.integers(K, size=data.shape)}

    def mf():
        cur["lam"] = numpy_mean_field_sweep(phi, theta, cur["lam"], black)

    def bp():
        cur["msgs"] = numpy_bp_flooding(phi, theta, cur["msgs"])

    def gibbs():
        cur["y"] = numpy_gibbs_sweep(phi, theta, cur["y"], black, rng)
    return {"cavi": mf, "bp": bp, "gibbs": gibbs}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", type=int, nargs="+", default=[256, 512, 1024])
    p.add_argument("-K", type=int, default=5)
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--no-numpy", action="store_true", help="inferlab's timings only")
    args = p.parse_args()
    model = GridMRF.course(args.K)
    print(f"\n## Grid MRF, K={args.K}, the course's potentials, spiral images with 20% noise, float64, "
          f"{torch.get_num_threads()} torch threads; median of {args.repeats}\n")
    print("| size | method | inferlab ms (q1-q3) | NumPy ms | NumPy / inferlab | ns per pixel | goal at 256 |")
    print("|---|---|---|---|---|---|---|")
    for n in args.size:
        data = model.prepare(load_spiral(args.K, n))
        numpy = {} if args.no_numpy else numpy_steps(model, data)
        for row in sweep_times(model, data, ("cavi", "bp", "gibbs"), repeats=args.repeats):
            m = row["method"]
            np_ms = statistics.median(time_steps(numpy[m], args.repeats)) if m in numpy else float("nan")
            goal = f"<= {GOALS_256[m]:g} ms" if n == 256 else ""
            print(f"| {n}x{n} | {m} | {row['ms']:.2f} ({row['ms_q1']:.2f}-{row['ms_q3']:.2f}) | {np_ms:.1f} | "
                  f"{np_ms / row['ms']:.1f} | {1e6 * row['ms'] / (n * n):.0f} | {goal} |", flush=True)


if __name__ == "__main__":
    main()
