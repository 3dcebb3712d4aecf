"""Arbitration by the exact gradient, for ill-conditioned problems.

Two float64 evaluations of the same gradient in different orders can differ by
more than 1e-12 relative on an ill-conditioned problem (saturating weights,
long sequences, exploding gradients).  The exact gradient settles it: the
unrolled scalar program evaluated in 40-digit mpmath.  Ours passes if it is
within 1e-12 of the exact gradient, or no more than 4x further from it than
the best of the other float64 routes (the references given, and the scalar
program in float64): as exact as float64 allows on that problem.  A real bug
(a missing term, a wrong factor) is far from the exact gradient while the
other routes are near it, and fails.
"""
import numpy as np

from symrnn.oracles import ScalarOracle

TOL = 1e-12


def errors(grads, exact):
    return {k: float(np.max(np.abs(np.asarray(grads[k], dtype=float) - g), initial=0.0)
                     / max(1.0, np.max(np.abs(g), initial=0.0))) for k, g in exact.items()}


def assert_as_exact_as_float64_allows(model, params, x, y, h0, ours, references, oracle=None):
    oracle = oracle or ScalarOracle(model, x.shape[0], np.asarray(y).shape[0])
    _, exact = oracle.loss_and_grads(params, x, y, h0=h0, precision=40)
    exact = {k: np.array(v, dtype=float) for k, v in exact.items()}
    _, scalar64 = oracle.loss_and_grads(params, x, y, h0=h0)
    routes = {"float64 scalar program": errors(scalar64, exact)}
    routes.update({name: errors(g, exact) for name, g in references.items()})
    mine = errors(ours, exact)
    for k in exact:
        floor = min(r[k] for r in routes.values())
        others = ", ".join(f"{name} {r[k]:.2e}" for name, r in routes.items())
        assert mine[k] <= max(TOL, 4 * floor), (
            f"{model}: grads[{k!r}] is {mine[k]:.2e} from the exact gradient ({others})")
        for name, r in routes.items():
            assert r[k] <= 1e3 * max(TOL, floor), f"{name} is {r[k]:.2e} from the exact grads[{k!r}]"
