"""Attention over encoder states, run on a tape of operations with rules.

An attention step is a short program of the operations over source positions
of :data:`symrnn.engine.sequence_rules.SEQUENCE_RULES` (``linear``, ``dot``, ``pairs``,
``tanh``, ``project``, ``softmax``, ``context``).  :class:`~symrnn.models.tape.Tape` records it
and sweeps it backwards applying each operation's adjoint rule, as
autograd's ``backward_pass`` does; :class:`SymbolicTape` runs the *same*
program on SymPy symbols and prints its equations and adjoints for the
reports.  There is no attention backward written by hand.

Scores (Luong et al. 2015; Bahdanau et al. 2015), for a query ``q`` (a
decoder state) and encoder states ``hbar_s`` (the memory, width ``C``):

* ``dot``:      ``e[t, s] = q[t]^T hbar[s]`` (needs ``C = H_dec``);
* ``general``:  ``e[t, s] = q[t]^T (W_a hbar[s])``, ``W_a`` ``(H_dec, C)``;
* ``additive``: ``e[t, s] = v_a^T tanh(W_a q[t] + U_a hbar[s])``, ``W_a``
  ``(A, H_dec)``, ``U_a`` ``(A, C)``, ``v_a`` ``(A,)`` (Bahdanau's score,
  Luong's "concat").

then ``a[t] = softmax_s(e[t])`` over the unmasked source positions and
``ctx[t] = sum_s a[t, s] hbar[s]``.
"""
from __future__ import annotations

import re

import sympy as sp

from ..errors import UnknownNameError
from ..engine.sequence_rules import sequence_rule, sum_s, sum_t
from ..engine.symbols import Param
from .tape import Tape  # noqa: F401 (the tape attention runs on)

SCORES = ("dot", "general", "additive")


class SymbolicTape:
    """The same program on SymPy symbols: forward equations and adjoints, for the reports."""

    def __init__(self):
        self.values, self.ops, self.equations = [], [], []

    def leaf(self, value, name=None) -> int:
        self.values.append(value)
        return len(self.values) - 1

    def apply(self, op, *args, name=None, **static):
        rule = sequence_rule(op)
        target = sp.Symbol(name or f"u{len(self.values)}")
        self.equations.append(sp.Eq(target, rule.form(*(self.values[a] for a in args)), evaluate=False))
        self.values.append(target)
        self.ops.append((rule, len(self.values) - 1, args, static))
        return len(self.values) - 1

    def mark(self) -> int:
        return len(self.ops)

    def adjoints(self):
        """``[(bar u, expression), ...]`` in the order a backward pass evaluates them."""
        parts = {}
        for rule, out, args, _ in reversed(self.ops):
            y = self.values[out]
            shares = rule.symbolic(y, bar_of(y), *(self.values[a] for a in args))
            for a, share in zip(args, shares):
                parts.setdefault(a, []).append(share)
        order = sorted(parts, reverse=True)  # a node's adjoint is complete once every later node has sent its share
        return [(bar_of(self.values[a]), _summed(self.values[a], sp.Add(*parts[a]))) for a in order]


def _summed(target, expr):
    """A parameter's adjoint: its per-position shares summed over the positions they still depend on."""
    if not isinstance(target, Param):
        return expr
    names = [s.name for s in expr.free_symbols if "[" in s.name and not isinstance(expr, (sum_t, sum_s))]
    if any(re.search(r"\[(.*,)?s\]", n) for n in names):
        expr = sum_s(expr)
    if any(re.search(r"\[t(,.*)?\]", n) for n in names):
        expr = sum_t(expr)
    return expr


def bar_of(symbol):
    return sp.Symbol(f"bar {symbol}")


class Attention:
    """One attention mechanism: its score, its parameters, and its program on a tape.

    ``query_size`` is the decoder state's size, ``memory_size`` the encoder
    states' width ``C``, ``size`` the additive score's width ``A`` (default
    ``query_size``).  Parameters are named ``attn.W_a``, ``attn.U_a``, ``attn.v_a``.
    """

    def __init__(self, score, query_size, memory_size, size=None):
        if score not in SCORES:
            raise UnknownNameError(f"Unknown attention score {score!r}; expected one of {list(SCORES)} "
                                   f"(Luong's dot and general, Bahdanau's additive, also called concat).")
        if score == "dot" and query_size != memory_size:
            raise UnknownNameError(
                f"The dot score q^T hbar needs decoder states and encoder states of one size; got decoder "
                f"{query_size} and encoder {memory_size} (a bidirectional concat encoder is 2H wide): use "
                f"score 'general' or 'additive', or equal sizes.")
        self.score = score
        self.query_size, self.memory_size = int(query_size), int(memory_size)
        self.size = int(size or query_size)

    @property
    def param_shapes(self) -> dict:
        if self.score == "dot":
            return {}
        if self.score == "general":
            return {"attn.W_a": (self.query_size, self.memory_size)}
        return {"attn.W_a": (self.size, self.query_size), "attn.U_a": (self.size, self.memory_size),
                "attn.v_a": (self.size,)}

    def keys(self, tape, params, memory):
        """The part of the score that depends on the memory only (once per sequence)."""
        if self.score == "dot":
            return memory
        W = "attn.W_a" if self.score == "general" else "attn.U_a"
        return tape.apply("linear", params[W], memory, name="k[s]")

    def attend(self, tape, params, query, keys, memory, mask=None):
        """Nodes ``(weights, context)`` for the query node (decoder states ``(T, N, H)``)."""
        if self.score == "additive":
            q = tape.apply("linear", params["attn.W_a"], query, name="r[t]")
            p = tape.apply("pairs", q, keys, name="p[t,s]")
            u = tape.apply("tanh", p, name="u[t,s]")
            e = tape.apply("project", u, params["attn.v_a"], name="e[t,s]")
        else:
            e = tape.apply("dot", query, keys, name="e[t,s]")
        a = tape.apply("softmax", e, name="a[t,s]", mask=mask)
        return a, tape.apply("context", a, memory, name="ctx[t]")

    # -- symbols ------------------------------------------------------------------------------------
    def derivation(self, query="h[t]"):
        """``(forward equations, adjoints)`` of the program, printed from the rule table."""
        tape = SymbolicTape()
        params = {k: tape.leaf(Param(k.split(".", 1)[1])) for k in self.param_shapes}
        memory = tape.leaf(sp.Symbol("hbar[s]"))
        q = tape.leaf(sp.Symbol(query))
        keys = self.keys(tape, params, memory)
        self.attend(tape, params, q, keys, memory)
        return tape.equations, tape.adjoints()
