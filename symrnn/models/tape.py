"""The tape every model runs on, and the blocks it records.

A model is a graph of blocks: a cell's generated step code run over time in
either direction, a stateless block (a readout, a bridge, Luong's combination),
a merge of two directions, a residual sum, the window of scored steps, the
operations of attention.  Running the model records each block on a
:class:`Tape` with its rule for sending an adjoint back to its arguments;
:meth:`Tape.sweep` walks the record backwards (HIPS/autograd's
``backward_pass`` in miniature).  That sweep is the only backward written by
hand in the package: every block's own backward is either generated
(:class:`symrnn.engine.codegen.BlockCode`) or a row of a rule table
(:data:`symrnn.engine.sequence_rules.SEQUENCE_RULES`, :data:`symrnn.models.wiring.MERGES`).

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

from ..engine.codegen import fresh
from ..engine.sequence_rules import sequence_rule


def accumulate(old, new):
    """``old + new`` for arrays, and key by key for dicts of arrays."""
    if old is None:
        return new
    if isinstance(old, dict):
        return {**old, **{k: old[k] + v if k in old else v for k, v in new.items()}}
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
        """A row of :data:`symrnn.engine.sequence_rules.SEQUENCE_RULES` applied to the nodes ``args``."""
        rule = sequence_rule(op)
        value = rule.forward(*(self.values[a] for a in args), **static)

        def backward(g, y, *inputs):
            return [vjp(g, y, *inputs, **static) for vjp in rule.vjp]

        return self.block(value, backward, *args)

    def op_of(self, node) -> int:
        """The index of the block that made ``node``."""
        return next(i for i, op in enumerate(self.ops) if op[1] == node)

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
def reordered(A, reverse):
    """``A`` (time first) in a direction's own time order: as it is (``reverse`` false), back to front
    (true), or each sequence reversed within its length (``reverse`` an index array ``(T, N)``, an
    involution, see :func:`symrnn.models.seq2seq.Seq2Seq`)."""
    if reverse is None or reverse is False:
        return A
    if reverse is True:
        return A[::-1]
    return np.take_along_axis(A, reverse.reshape(reverse.shape + (1,) * (A.ndim - 2)), axis=0)


def run_cell(tape, code, params, X, S0, *, prefix="", out, sizes, reverse=False, final_grads=None, empty=fresh):
    """A cell's generated step code over the sequence node ``X`` in the direction ``reverse`` (see
    :func:`reordered`).

    ``params`` is the node of the model's parameter dict (the cell reads the keys ``prefix + name``),
    ``S0`` the node of its initial states.  Returns ``(node of the output state over time, aligned
    with X, cache)``; the block's backward is the generated one, its final states receiving
    ``final_grads`` (zeros when None).
    """
    P = {k: tape.values[params][prefix + k] for k in code.params}
    X_d = tape.values[X]
    if reverse is not False and reverse is not None:
        X_d = np.ascontiguousarray(reordered(X_d, reverse))
    cache = code.forward(P, X_d, tape.values[S0], sizes, empty)
    H = cache[f"S_{out}"][1:]

    def backward(G, _, __, ___, ____):
        dS = final_grads if final_grads is not None else \
            {s: np.zeros_like(cache[f"S_{s}"][0]) for s in code.states}
        g, dX, dS0 = code.backward(P, X_d, cache, {out: reordered(G, reverse)}, dS, sizes, empty)
        return {prefix + k: v for k, v in g.items()}, reordered(dX, reverse), dS0

    node = tape.block(reordered(H, reverse), backward, params, X, S0)
    return node, cache


def run_step(tape, code, params, x, S, *, prefix="", out, sizes):
    """One step of a cell on the input node ``x`` ``(1, N, D)`` from the node of its states (a dict);
    returns the node of its states after the step (a dict, whose adjoint may name some states only)."""
    P = {k: tape.values[params][prefix + k] for k in code.params}
    cache = code.forward(P, tape.values[x], tape.values[S], sizes)
    after = {s: cache[f"S_{s}"][1] for s in code.states}

    def backward(g, _, __, x_value, ___):
        dS = {s: g[s] if s in g else np.zeros_like(v) for s, v in after.items()}
        ext = {out: np.zeros((1,) + after[out].shape, after[out].dtype)}
        grads, dx, dS0 = code.backward(P, x_value, cache, ext, dS, sizes)
        return {prefix + k: v for k, v in grads.items()}, dx, dS0

    return tape.block(after, backward, params, x, S)


def pick(tape, node, key, shape=None):
    """The entry ``key`` of a dict node (``shape``: reshaped), its adjoint sent back as ``{key: g}``."""
    value = tape.values[node][key]
    return tape.block(value if shape is None else value.reshape(shape),
                      lambda g, _, d: ({key: g.reshape(d[key].shape)},), node)


def tap(tape, node, store, key):
    """``node`` itself, recording in ``store[key]`` the adjoint that passes through (the share of one path)."""
    def backward(g, _, __):
        store[key] = g
        return (g,)

    return tape.block(tape.values[node], backward, node)


def concat(tape, nodes):
    """The nodes joined along the last axis."""
    values = [tape.values[n] for n in nodes]
    cuts = np.cumsum([v.shape[-1] for v in values])[:-1]
    return tape.block(np.concatenate(values, axis=-1), lambda g, *_: np.split(g, cuts, axis=-1), *nodes)


def run_stateless(tape, code, params, Z, *, prefix="", outputs, sizes, empty=fresh, keys=None):
    """A stateless block (a readout ``o = V h + c``, a bridge) over every row of the node ``Z``
    ``(..., width)`` at once; returns the node of its first output, shaped ``(..., size)``, or with
    ``keys`` (output -> key) the node of the dict of every output."""
    P = {k: tape.values[params][prefix + k] for k in code.params}
    Zv = tape.values[Z]
    flat = np.ascontiguousarray(Zv).reshape(1, -1, Zv.shape[-1])
    cache = code.forward(P, flat, {}, sizes, empty)
    named = {o: cache[f"C_{o}"].reshape(Zv.shape[:-1] + (-1,)) for o in outputs}
    value = named[outputs[0]] if keys is None else {keys[o]: v for o, v in named.items()}

    def backward(G, _, __, ___):
        got = {outputs[0]: G} if keys is None else {o: G.get(keys[o], np.zeros_like(named[o])) for o in outputs}
        ext = {o: np.ascontiguousarray(g).reshape(1, flat.shape[1], -1) for o, g in got.items()}
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
    """The merge of two directions' nodes by a row of :data:`symrnn.models.wiring.MERGES`."""
    return tape.block(rule.forward(tape.values[F], tape.values[B]),
                      lambda G, _, Fv, Bv: rule.backward(G, Fv, Bv), F, B)


def add(tape, A, B):
    """``A + B`` (a residual link)."""
    return tape.block(tape.values[A] + tape.values[B], lambda G, _, __, ___: (G, G), A, B)


# -- the blocks of the encoder-decoder -------------------------------------------------------------
def lookup(tape, P, key, ids, vocab):
    """Rows ``key`` of the parameter dict node ``P`` at token ids ``(T, N)``; the adjoint scattered back."""
    return tape.block(tape.values[P][key][ids], lambda g, _, __: ({key: scatter_rows(ids, g, vocab)},), P)


def finals(tape, nodes, lengths):
    """``z``: each direction's final output state (forward: the last real token; backward: the first),
    from the directions' outputs aligned with the source positions, concatenated."""
    n, steps = np.arange(len(lengths)), [lengths - 1, np.zeros_like(lengths)]
    values = [tape.values[node] for node in nodes]

    def backward(g, _, *inputs):
        shares = []
        for k, (v, at) in enumerate(zip(inputs, steps)):
            share = np.zeros_like(v)
            share[at, n] = g[:, k * v.shape[-1]:(k + 1) * v.shape[-1]]
            shares.append(share)
        return shares

    return tape.block(np.concatenate([v[at, n] for v, at in zip(values, steps)], axis=-1), backward, *nodes)


def stack(tape, nodes):
    """The nodes stacked along a new first axis (time)."""
    return tape.block(np.stack([tape.values[a] for a in nodes]), lambda g, *_: list(g), *nodes)


def broadcast(tape, node, T):
    """``node`` repeated over ``T`` steps; the adjoint summed over them."""
    v = tape.values[node]
    return tape.block(np.broadcast_to(v, (T,) + v.shape), lambda g, *_: (g.sum(axis=0),), node)


def scatter_rows(ids, d, vocab):
    """``dL/d embedding``: the rows of ``d`` added at their token ids (sorted, then summed per id)."""
    ids, rows = ids.reshape(-1), d.reshape(-1, d.shape[-1])
    order = np.argsort(ids, kind="stable")
    sorted_ids = ids[order]
    starts = np.flatnonzero(np.r_[True, sorted_ids[1:] != sorted_ids[:-1]])
    out = np.zeros((vocab, d.shape[-1]), dtype=d.dtype)
    out[sorted_ids[starts]] = np.add.reduceat(rows[order], starts, axis=0)
    return out
