"""Catalogued mistakes of :mod:`symrnn.verify.mutants`: a parameter gradient assigned in the backward
loop where it is accumulated, so it holds one step's term only."""
from __future__ import annotations

import sympy as sp

from ..engine.symbols import Param
from .mutants import Mutation


def additive_params(cell):
    """The trained vector parameters that enter every equation as a term of a sum only: the biases."""
    seen = {}
    for eq in cell.equations:
        for node in sp.preorder_traversal(eq.rhs):
            for arg in node.args:
                if isinstance(arg, Param):
                    seen.setdefault(arg.name, set()).add(isinstance(node, sp.Add))
    return [p for p, spec in cell.params.items() if not spec.is_matrix and not spec.fixed and seen.get(p) == {True}]


#: where the one term an assigned gradient keeps comes from: (the step, which loop leaves it there)
LAST_WRITTEN = (("first", "step 1", "the last step a loop backward over time (reversed(range(T))) visits"),
                ("last", "step T", "the last step a loop forward over time visits"))


def assigned_mistakes(cell):
    """A parameter gradient assigned in the backward loop where it is accumulated (``db = da.sum(0)`` for
    ``db += da.sum(0)``): it holds one step's term, the last the loop wrote (step 1 in a reversed loop,
    step T in a loop forward over time); the biases alone, or every parameter's gradient."""
    biases = tuple(additive_params(cell))
    trained = tuple(k for k, spec in cell.params.items() if not spec.fixed)
    groups = [("bias", "the bias gradient", "db = da.sum(0) where db += da.sum(0)", biases)]
    if len(trained) > len(biases):
        groups.append(("gradients", "every parameter gradient", "dW = ... where dW += ...", trained))
    out = []
    for short, what, written, names in groups:
        for at, step, loop in LAST_WRITTEN if names else ():
            out.append(Mutation(f"{short}-assigned-{at}-step", f"{what} is assigned in the backward loop instead of "
                                f"accumulated over time ({written} belongs): it holds only {step}'s term, {loop}",
                                where=", ".join(names), only_step=at, only_for=names,
                                changes="dL/db" if short == "bias" else "dL/dW"))
    return out
