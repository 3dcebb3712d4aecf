"""Which steps read an input and which steps are scored.

An architecture maps the lengths of the given inputs (``T_in``) and targets
(``T_out``) to the number of steps the cell runs, the steps that read an input
and the steps whose output enters the loss.  Steps without an input read a
zero vector, which adds nothing to ``U x_t``.
"""
from __future__ import annotations

from dataclasses import dataclass

import sympy as sp

from ..errors import ShapeError
from ..validation import look_up


@dataclass(frozen=True)
class Schedule:
    T: int  # steps the cell runs
    input_steps: range
    output_steps: range


@dataclass(frozen=True)
class Architecture:
    name: str
    description: str

    def schedule(self, T_in: int, T_out: int) -> Schedule:
        if T_in < 1 or T_out < 1:
            raise ShapeError(f"{self.name}: need at least one step, got T_in={T_in}, T_out={T_out}.")
        name = self.name
        if name == "many-to-many":
            self._require(T_in == T_out, f"inputs and targets of equal length, got T_in={T_in}, T_out={T_out}")
            return Schedule(T_in, range(T_in), range(T_in))
        if name == "many-to-one":
            self._require(T_out == 1, f"targets with one step (shape (1, N, ...)), got T_out={T_out}")
            return Schedule(T_in, range(T_in), range(T_in - 1, T_in))
        if name == "one-to-many":
            self._require(T_in == 1, f"inputs with one step (shape (1, N, D)), got T_in={T_in}")
            return Schedule(T_out, range(1), range(T_out))
        if name == "one-to-one":
            self._require(T_in == 1 and T_out == 1, f"one input and one target step, got T_in={T_in}, T_out={T_out}")
            return Schedule(1, range(1), range(1))
        # many-to-many-delayed: read T_in inputs, then emit T_out outputs
        return Schedule(T_in + T_out, range(T_in), range(T_in, T_in + T_out))

    def step_sets(self, T, T_in):
        """The steps that read an input and the scored steps as symbolic ranges ``(first, last)``
        (inclusive, counted from 1), for ``T`` steps of which the first ``T_in`` read the inputs of a
        delayed architecture; the reports print the adjoints and sums of each architecture with them.
        One-to-one has ``T = 1``."""
        one = sp.Integer(1)
        if self.name == "one-to-one":
            return (one, one), (one, one)
        if self.name == "many-to-one":
            return (one, T), (T, T)
        if self.name == "one-to-many":
            return (one, one), (one, T)
        if self.name == "many-to-many-delayed":
            return (one, T_in), (T_in + 1, T)
        return (one, T), (one, T)

    def _require(self, ok, what):
        if not ok:
            raise ShapeError(f"Architecture {self.name!r} needs {what}.")


ARCHITECTURES = {a.name: a for a in (
    Architecture("many-to-many", "an output at every step (equal lengths)"),
    Architecture("many-to-one", "one output after the last input"),
    Architecture("one-to-many", "one input at the first step, an output at every step"),
    Architecture("one-to-one", "one input and one output, T = 1"),
    Architecture("many-to-many-delayed", "T_in inputs read first, then T_out outputs (unequal lengths)"),
)}


def get_architecture(name: str) -> Architecture:
    return look_up(ARCHITECTURES, name, "architecture")
