"""Head layouts: states and weights split into heads, as multi-head cells are written in PyTorch
and JAX (xLSTM's sLSTM heads, a multi-head minGRU): the state ``(N, heads, H/heads)`` instead of
``(N, H)``, the states of every step ``(T, N, heads, H/heads)``, and the rows of a stacked weight
``(G*H, D)`` ordered head by head (``heads, G, H/heads``: each head's gates together, what
``.view(N, heads, G*H/heads)`` then ``.chunk(G, -1)`` reads) or gate by gate (``G, heads, H/heads``).

:func:`with_heads` presents such code to the verifier with symrnn's ``(N, H)`` states;
:class:`HeadStacked` is the weights' layout; :func:`reduction_fingerprint` names the mistake of a
reduction over the wrong axis of the head layout: a gradient summed over the heads where each head
keeps its own (every head's block the same), or over the units of a head (every unit of a head the
same).
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from ...errors import ShapeError
from ..mutants import Mutation
from .adapted import named
from .stacked import GateStacked


@dataclass(frozen=True)
class HeadStacked(GateStacked):
    """:class:`~symrnn.verify.frameworks.stacked.GateStacked` with ``heads`` heads; ``head_major``:
    the rows of a stacked array ordered ``(heads, G, H/heads)``, else ``(G, heads, H/heads)``."""

    heads: int = 1
    head_major: bool = True

    def _order(self, G, H):
        """Row ``r`` of the user's array is row ``order[r]`` of the gate-by-gate stacking."""
        if H % self.heads:
            raise ShapeError(f"H = {H} is not a multiple of heads = {self.heads}")
        dh = H // self.heads
        if not self.head_major:
            return np.arange(G * H)
        return np.array([g * H + k * dh + j for k in range(self.heads) for g in range(G) for j in range(dh)])

    def to_user(self, cell_name, params, *, gradients=False) -> dict:
        out = super().to_user(cell_name, params, gradients=gradients)
        G = len(self.gate_order)
        H = np.shape(next(iter(params.values())))[0]  # every canonical block has H rows
        return {k: v[self._order(G, H)] for k, v in out.items()}

    def from_user(self, cell_name, user, sizes, *, gradients=False) -> dict:
        G, H = len(self.gate_order), sizes["H"]
        inverse = np.argsort(self._order(G, H))
        stacked = {}
        for name, value in user.items():
            a = np.asarray(value)
            stacked[name] = a[inverse] if a.ndim >= 1 and a.shape[0] == G * H else a
        return super().from_user(cell_name, stacked, sizes, gradients=gradients)


def head_candidates(layouts, heads):
    """Each layout in both row orders of ``heads`` heads."""
    for L in layouts:
        for major in (True, False):
            yield HeadStacked(L.name, L.names, gate_order=L.gate_order, batch_major=L.batch_major, heads=heads,
                              head_major=major)


def _split_states(a, heads, what):
    a = np.asarray(a)
    if a.shape[-1] % heads:
        raise ShapeError(f"{what}: H = {a.shape[-1]} is not a multiple of heads = {heads}")
    return a.reshape(a.shape[:-1] + (heads, a.shape[-1] // heads))


def with_heads(code, heads):
    """``code`` (a FrameworkCode whose states are ``(..., heads, H/heads)``) with symrnn's ``(..., H)``
    states: the initial states split into heads before the call, the states it returns and the
    gradients of the initial states joined."""
    data = [k for k, r in enumerate(code.roles) if r in ("h0", "c0")]
    forward, backward = code.forward, code.backward

    def forward_heads(*arrays):
        arrays = [_split_states(a, heads, code.roles[k]) if k in data else a for k, a in enumerate(arrays)]
        h, cache = forward(*arrays)
        h = np.asarray(h)
        return h.reshape(h.shape[:-2] + (h.shape[-2] * h.shape[-1],)), cache

    def backward_heads(dh, *more):  # more: [dh_n, dc_n,] cache (the final states' gradients, as returned)
        grads = backward(_split_states(dh, heads, "dh"), *more)
        return tuple(np.asarray(g).reshape(np.shape(g)[:-2] + (-1,)) if k in data else g
                     for k, g in enumerate(grads))

    names = list(code.forward.__signature__.parameters)
    return replace(code, forward=named(forward_heads, names, code.forward.__name__),
                   backward=named(backward_heads, list(code.backward.__signature__.parameters),
                                  code.backward.__name__),
                   describe=f"{code.describe}, {heads} heads")


def _same(blocks):
    """The blocks (first axis) are the same, to rounding, and not all zero."""
    scale = np.max(np.abs(blocks))
    return scale > 0 and np.max(np.abs(blocks - blocks[:1])) <= 64 * np.finfo(np.float32).eps * scale


def reduction_fingerprint(code, layout, model, wrong):
    """A Mutation naming a reduction over the wrong axis of ``layout``'s heads in the gradients
    ``wrong`` (user names, ``"dweight_ih"``), seen on a fresh problem, or None."""
    heads, G, H = layout.heads, len(layout.gate_order), model.sizes["H"]
    rng = np.random.default_rng(7)
    params = model.init_params(7, scale=0.5)
    user = layout.to_user(model.cell, params)
    N, T, D = 3, 4, model.sizes["D"]
    data = {"x": rng.normal(size=(N, T, D) if layout.batch_major else (T, N, D)), "h0": rng.normal(size=(N, H)),
            "c0": rng.normal(size=(N, H))}
    args = [data[r] if r in data else user[layout.names[r]] for r in code.roles]
    h, cache = code.forward(*args)
    grads = dict(zip(code.roles, code.backward(rng.normal(size=np.shape(h)), cache)))
    for role, name in layout.names.items():
        if f"d{name}" not in wrong or role not in grads:
            continue
        g = np.asarray(grads[role], dtype=np.float64)
        if g.shape[0] != G * H:
            continue
        by_head = g.reshape((heads, G, H // heads) + g.shape[1:]) if layout.head_major else \
            np.moveaxis(g.reshape((G, heads, H // heads) + g.shape[1:]), 1, 0)
        if _same(by_head):
            return Mutation("heads-reduced", f"the gradient of {name} is the same in every head: summed over the "
                            f"heads axis where each of the {heads} heads keeps its own (a reduction over the wrong "
                            f"axis of the head layout)", where=name, changes=f"d{name}")
        units = np.moveaxis(by_head, 2, 0)
        if _same(units):
            return Mutation("head-units-reduced", f"the gradient of {name} is the same for every unit of a head: "
                            f"summed over the {H // heads} units of each head where each unit keeps its own (a "
                            f"reduction over the wrong axis of the head layout)", where=name, changes=f"d{name}")
    return None
