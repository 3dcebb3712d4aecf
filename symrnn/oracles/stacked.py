"""Names kept from when stacked and bidirectional models had oracles of their own.

Every route now unrolls any model from its parts: :class:`symrnn.oracles.scalar.ScalarOracle`,
:func:`symrnn.oracles.torch_autograd.torch_loss_and_grads`,
:func:`symrnn.oracles.finite_differences.central_differences` and :func:`symrnn.checks.agreement_table`.
"""
from __future__ import annotations

from .finite_differences import central_differences as stack_central_differences  # noqa: F401
from .scalar import ScalarOracle


class ScalarStackOracle(ScalarOracle):
    """:class:`~symrnn.oracles.scalar.ScalarOracle` (``max_lines`` is accepted and ignored: its budget
    counts scalar operations)."""

    def __init__(self, model, T_in, T_out, max_lines=None):
        super().__init__(model, T_in, T_out)


def stack_agreement_table(model, seed=0, T=3, N=2) -> str:
    """:func:`symrnn.checks.agreement_table` (deprecated name)."""
    from ..checks import agreement_table

    return agreement_table(model, seed=seed, T_in=T, N=N)
