"""The tape every model runs on, and the blocks it records.

A model is a graph of blocks: a cell's generated step code run over time in
either direction, a stateless block (a readout, a bridge, Luong's combination),
a merge of two directions, a residual sum, the window of scored steps, the
operations of attention.  Running the model records each block on a
:class:`Tape` with its rule for sending an adjoint back to its arguments;
:meth:`Tape.sweep` walks the record backwards (HIPS/autograd's
``backward_pass`` in miniature).  That sweep is the only backward written by
hand in the package: every block's own backward is either generated
(:class:`symrnn.codegen.BlockCode`) or a row of a rule table
(:data:`symrnn.functions.SEQUENCE_RULES`, :data:`symrnn.wiring.MERGES`).

Values may be arrays or dicts of arrays (the parameters, the initial states);
the adjoint of a dict is a dict, summed key by key.

>>> import numpy as np
>>> tape = Tape()
>>> a = tape.leaf(np.arange(3.0))
>>> b = tape.block(tape.values[a] * 2, lambda g, y, x: (2 * g,), a)
>>> tape.sweep({b: np.ones(3)})[a]
array([2., 2., 2.])
"""
from __future__ import annotations

import numpy as np

from .codegen import fresh
from .functions import sequence_rule


def accumulate(old, new):
    """``old + new`` for arrays, and key by key for dicts of arrays."""
    if old is None:
        return new
    if isinstance(old, dict):
        out = dict(old)
        for k, v in new.items():
            out[k] = v if k not in out else out[k] + v
        return out
    return old + new


class Tape:
    """Values and the blocks that made them; :meth:`sweep` is the reverse pass."""

    def __init__(self):
        self.values = []
        self.ops = []  # (backward, output node, argument nodes)

    def leaf(self, value, name=None) -> int:
        self.values.append(value)
        return len(self.values) - 1

    def block(self, value, backward, *args) -> int:
        """Record ``value``, computed by the caller from the nodes ``args``; ``backward(g, value,
        *arguments)`` returns the adjoint share of each argument (None: no share)."""
        self.values.append(value)
        self.ops.append((backward, len(self.values) - 1, args))
        return len(self.values) - 1

    def apply(self, op, *args, name=None, **static) -> int:
        """A row of :data:`symrnn.functions.SEQUENCE_RULES` applied to the nodes ``args``."""
        rule = sequence_rule(op)
        value = rule.forward(*(self.values[a] for a in args), **static)

        def backward(g, y, *inputs):
            return [vjp(g, y, *inputs, **static) for vjp in rule.vjp]

        return self.block(value, backward, *args)

    def mark(self) -> int:
        """The number of blocks so far: :meth:`sweep` from here undoes only what follows."""
        return len(self.ops)

    def sweep(self, adjoint: dict, start: int = 0, stop: int | None = None) -> dict:
        """Reverse accumulation over blocks ``start..stop``: ``adjoint`` maps nodes to
        ``dL/d node`` (seeded by the caller) and receives every argument's share."""
        for backward, out, args in reversed(self.ops[start:stop]):
            g = adjoint.pop(out, None)
            if g is None:
                continue
            shares = backward(g, self.values[out], *(self.values[a] for a in args))
            for a, share in zip(args, shares):
                if share is not None:
                    adjoint[a] = accumulate(adjoint.get(a), share)
        return adjoint


# -- the blocks of the recurrent wirings -----------------------------------------------------------
def run_cell(tape, code, params, X, S0, *, prefix="", out, sizes, reverse=False, final_grads=None,
             empty=fresh, zero_seed=False):
    """A cell's generated step code over the sequence node ``X`` (backwards in time when ``reverse``).

    ``params`` is the node of the model's parameter dict (the cell reads the keys ``prefix + name``),
    ``S0`` the node of its initial states.  Returns ``(node of the output state over time, aligned
    with X, cache)``; the block's backward is the generated one, its final states receiving
    ``final_grads``.  ``zero_seed``: run the backward even when no adjoint reaches the outputs.
    """
    names = list(code.params)
    P = {k: tape.values[params][prefix + k] for k in names}
    X_d = tape.values[X]
    if reverse:
        X_d = np.ascontiguousarray(X_d[::-1])
    cache = code.forward(P, X_d, tape.values[S0], sizes, empty)
    H = cache[f"S_{out}"][1:]

    def backward(G, _, __, ___, ____):
        ext = G[::-1] if reverse else G
        g, dX, dS0 = code.backward(P, X_d, cache, {out: ext}, final_grads or {}, sizes, empty)
        return {prefix + k: v for k, v in g.items()}, (dX[::-1] if reverse else dX), dS0

    node = tape.block(H[::-1] if reverse else H, backward, params, X, S0)
    return node, cache


def run_stateless(tape, code, params, Z, *, prefix="", outputs, sizes, empty=fresh):
    """A stateless block (a readout ``o = V h + c``, a bridge) over every row of the node ``Z``
    ``(..., width)`` at once; returns the node of its first output, shaped ``(..., size)``."""
    P = {k: tape.values[params][prefix + k] for k in code.params}
    Zv = tape.values[Z]
    flat = np.ascontiguousarray(Zv).reshape(1, -1, Zv.shape[-1])
    cache = code.forward(P, flat, {}, sizes, empty)
    out = outputs[0]
    value = cache[f"C_{out}"].reshape(Zv.shape[:-1] + (-1,))

    def backward(G, _, __, ___):
        ext = {out: np.ascontiguousarray(G).reshape(1, flat.shape[1], -1)}
        g, dflat, _s = code.backward(P, flat, cache, ext, {}, sizes, empty)
        return {prefix + k: v for k, v in g.items()}, dflat.reshape(Zv.shape)

    return tape.block(value, backward, params, Z)


def window(tape, X, steps):
    """The steps ``steps`` (a range) of the sequence node ``X``; the adjoint is zero elsewhere."""
    full = tape.values[X]
    if steps.start == 0 and steps.stop == full.shape[0]:
        return X

    def backward(G, _, X_value):
        out = np.zeros(X_value.shape[:1] + G.shape[1:], dtype=G.dtype)
        out[steps.start:steps.stop] = G
        return (out,)

    return tape.block(full[steps.start:steps.stop], backward, X)


def merge(tape, rule, F, B):
    """The merge of two directions' nodes by a row of :data:`symrnn.wiring.MERGES`."""
    return tape.block(rule.forward(tape.values[F], tape.values[B]),
                      lambda G, _, Fv, Bv: rule.backward(G, Fv, Bv), F, B)


def add(tape, A, B):
    """``A + B`` (a residual link)."""
    return tape.block(tape.values[A] + tape.values[B], lambda G, _, __, ___: (G, G), A, B)
