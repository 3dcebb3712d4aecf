"""Fuzz: random user-defined cells are refused or exact.

Each example is a random recipe (``tests/fuzz_recipes.py``): one to three states, a few
intermediates, matrix products ``P @ v`` (also of compound vectors, which become automatic
lets), gates from every supported function (tanh, sigmoid, relu, exp, log, sin, cos, sqrt,
powers, Abs, Max, Min, constants, a registered ``softsign``), blends
``(1 - z) * h + z * n``, states never read, updates that ignore ``h[t-1]``; every name is
drawn from a pool of Python keywords, builtins, NumPy/SymPy names, names of symrnn's
generated code and oracles, names whose gradient keys collide (state ``w1`` and parameter
``w10``, ...) and unicode.  The cell is built through the public API and must either

* be refused at definition time (``sr.Cell`` calls or ``sr.Model``) with an ``sr.SymRNNError``, or
* give the loss and every gradient (parameters, the input under its own name, ``<state>0``)
  within 1e-10 relative of an independent route: a float64 PyTorch forward pass built
  from the same recipe, differentiated by autograd.  On tiny sizes the scalar oracle must
  agree with it too.

A cell whose gradient keys would collide must be refused.  Any other exception, or a wrong
number, fails; the failure notes print the recipe as runnable symrnn code.

``test_route_on_plain_cells`` checks the torch route itself, on cells made of what symrnn has
long handled: ordinary names, the input named ``x``, tanh and sigmoid, sums, products and
blends, each product ``P @ v`` of a state, intermediate or the input with its own matrix, every
state read (``unusual=False`` in ``cells_and_recipes``).  There a refusal fails too.

Run:        .venv/bin/python -m pytest tests/test_fuzz_cells.py -q
Large run:  SYMRNN_FUZZ_EXAMPLES=2000 .venv/bin/python -m pytest tests/test_fuzz_cells.py -q
            (add HYPOTHESIS_PROFILE=ci for the derandomized examples, --hypothesis-show-statistics
            for how many were refused and why)
"""
from __future__ import annotations

import os

import numpy as np
from hypothesis import event, given, note, settings, strategies as st

import symrnn as sr
from symrnn.oracles import ScalarOracle

from fuzz_recipes import PLAIN_BINARY, PLAIN_FUNCTIONS, PLAIN_NAMES, cells_and_recipes, torch_loss_and_grads

FUZZ_EXAMPLES = int(os.environ.get("SYMRNN_FUZZ_EXAMPLES", "100"))
TOL = 1e-10


def relative_error(ours, reference) -> float:
    """``max|a - b| / max(1, max|b|)``."""
    ours, reference = np.asarray(ours, dtype=float), np.asarray(reference, dtype=float)
    return float(np.max(np.abs(ours - reference), initial=0.0) / max(1.0, np.max(np.abs(reference), initial=0.0)))


def assert_agrees(route, loss, grads, ref_loss, ref_grads):
    """``route``'s loss and gradients equal the torch route's (same keys, shapes, 1e-10 relative)."""
    assert set(grads) == set(ref_grads), (
        f"{route}: gradient keys {sorted(grads)}, expected {sorted(ref_grads)} "
        f"(missing {sorted(set(ref_grads) - set(grads))}, extra {sorted(set(grads) - set(ref_grads))})")
    err = relative_error(loss, ref_loss)
    assert err <= TOL, f"{route}: loss {loss!r} differs from torch's {ref_loss!r} by {err:.2e}"
    for key, expected in ref_grads.items():
        got = np.asarray(grads[key], dtype=float)
        assert got.shape == expected.shape, f"{route}: grads[{key!r}] has shape {got.shape}, expected {expected.shape}"
        err = relative_error(got, expected)
        assert err <= TOL, f"{route}: grads[{key!r}] differs from torch's by {err:.2e} relative"


def accepted_model(case):
    """The case's model, or None when it is refused at definition time with a symrnn error."""
    try:
        return case.build_model()
    except sr.SymRNNError as exc:
        event(f"refused: {type(exc).__name__}")
        note(f"refused: {type(exc).__name__}: {exc}")
        return None


def check_against_scalar_oracle(model, data, reference):
    """The project's unrolled scalar program agrees with the torch route too (tiny sizes only)."""
    try:
        oracle = ScalarOracle(model, data.x.shape[0], data.y.shape[0])
    except sr.DerivationTooLargeError:
        event("scalar oracle: too large")
        return
    event("scalar oracle compared")
    loss, grads = oracle.loss_and_grads(data.params, data.x, data.y, h0=data.h0)
    assert_agrees("scalar oracle", loss, grads, *reference)


def check_case(case, torch64, refusal_allowed=True):
    """Refused with a symrnn error, or loss and gradients equal to the torch route's."""
    note(case.recipe.source())
    note(repr(case.problem))
    model = accepted_model(case)
    if model is None:
        assert refusal_allowed, "a plain cell was refused (see the note above)"
        return
    assert not case.keys_collide, (
        f"accepted a cell whose gradient keys collide: {case.recipe.gradient_keys(case.problem.has_readout)}")
    event("accepted")
    data = case.data()
    reference = torch_loss_and_grads(case, data, torch64)
    assert np.isfinite(reference[0]), "the torch route is not finite: the recipe's magnitude bounds are wrong"
    loss, grads = model.loss_and_grads(data.params, data.x, data.y, h0=data.h0)
    assert_agrees("symrnn", loss, grads, *reference)
    if case.problem.tiny:
        check_against_scalar_oracle(model, data, reference)


@settings(max_examples=FUZZ_EXAMPLES, deadline=None)
@given(case=cells_and_recipes())
def test_random_cells_are_refused_or_exact(torch64, case):
    check_case(case, torch64)


@settings(max_examples=max(25, FUZZ_EXAMPLES // 3), deadline=None)
@given(case=cells_and_recipes(names=PLAIN_NAMES, functions=PLAIN_FUNCTIONS, binary=PLAIN_BINARY,
                              cell_names=st.just("plain"), collisions=(), allow_constants=False,
                              unusual=False, input_name="x"))
def test_route_on_plain_cells(torch64, case):
    """The torch route on cells without exotic names or functions, which symrnn must accept."""
    check_case(case, torch64, refusal_allowed=False)
