"""Another convention at a kink: gradients that differ from the exact ones only where an argument of
relu is exactly 0.

relu has no derivative at 0; symrnn takes ``relu'(0) = 0`` (``step(0) = 0``, as PyTorch's backward
does).  Code that writes the mask as ``a >= 0`` takes 1 there, ``np.heaviside(a, 0.5)`` takes 1/2.
Such code agrees with the exact gradients wherever no pre-activation is exactly 0, and differs where
one is (an all-zero input and state, a drawn case with zero weights): that is a convention at a point
where the function is not differentiable, not a derivative left out, and the report says so."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..engine.symbols import parse
from .diagnose import matches_candidate
from .mutants import Mutation, applications, candidate

#: the value at 0 each rewrite mode stands for, and how code writes it
_SPELLED = {"kink-one": ("1", "a mask such as (a >= 0)"), "kink-half": ("1/2", "np.heaviside(a, 0.5)")}


@dataclass(frozen=True)
class KinkConvention:
    """The user's gradients are the exact ones with ``relu'(0)`` taken as ``value`` in ``where``."""

    function: str  # "relu"
    value: str  # "1" or "1/2"
    spelled: str  # how code writes it
    where: tuple  # the quantities whose relu it concerns, e.g. ("h[t] (the hidden state)",)

    def to_json(self) -> dict:
        return {"kind": "kink", "function": self.function, "value": self.value, "where": list(self.where),
                "text": self.short()}

    def short(self) -> str:
        """What the verdict line says after ``DIFFERS ONLY``."""
        return (f"AT A KINK: {self.function}'(0) = {self.value} in {', '.join(w.split(' ')[0] for w in self.where)}; symrnn "
                f"takes {self.function}'(0) = 0 (as PyTorch)")

    def sentence(self) -> str:
        """The report's explanation: what the code does, what symrnn does, where they differ, how to match."""
        f = self.function
        return (f"the gradients differ from the exact ones only at {f}'s kink: the code takes {f}'(0) = {self.value} "
                f"({self.spelled}) in {' and '.join(self.where)}, where symrnn takes {f}'(0) = 0, as PyTorch's "
                f"backward does; {f} has no derivative at 0, so the value there is a convention, and the two "
                f"differ only where a pre-activation of {f} is exactly 0 (every other entry agrees to the exact "
                f"tolerance); not a backprop mistake; to match symrnn and PyTorch write the mask as (a > 0)")

    def declaration(self):
        """No declaration verifies another kink convention: the report says how to match instead."""
        return None


def kink_conventions(cell):
    """``[(mutation, KinkConvention)]``: relu's derivative with ``step(0)`` taken as 1 or 1/2, in every
    relu of the cell at once, then (a cell with several) in each alone."""
    apps = [(eq, app) for eq, app in applications(cell) if type(app).__name__ == "relu"]
    groups = [apps] + ([[a] for a in apps] if len(apps) > 1 else [])
    out = []
    for mode, (value, spelled) in _SPELLED.items():
        for group in groups:
            where = tuple(_where(cell, eq) for eq, _ in group)
            mutation = Mutation(f"relu-kink-{value}", "", rewrite=tuple((eq.target, app, mode) for eq, app in group))
            out.append((mutation, KinkConvention("relu", value, spelled, where)))
    return out


def _where(cell, eq):
    base = parse(eq.target)[0]
    role = cell.roles.get(base, "")
    return f"{base}[t]" + (f" (the {role})" if role else "")


def explain_kinks(model, failing):
    """The :class:`KinkConvention` whose gradients the user's equal in every failing case, or None: the
    cell has a relu, and the convention moves some gradient there (else it explains nothing: the
    failing gradients are outside what the comparison sees, as a second bias's)."""
    for mutation, convention in kink_conventions(model.cell):
        if not mutation.rewrite:  # no relu in the cell: no kink
            continue
        made = [(candidate(model, problem, mutation), run, ex, dtype_model)
                for problem, run, ex, dtype_model, _ in failing]
        moved = any(not np.array_equal(grads[k], ex.grads[k]) for grads, _, ex, _ in made for k in grads
                    if k in ex.grads)  # the convention changes some gradient here: it explains something
        if moved and all(matches_candidate(run, grads, ex, d.unit) for grads, run, ex, d in made):
            return convention
    return None
