"""Verifying hand-written bidirectional and stacked networks (loss mode).

The user's function takes the parameters of a :class:`~symrnn.models.wiring.StackedModel` by
PyTorch's ``state_dict`` names (``layout="pytorch"``: ``weight_ih_l0``, ``weight_hh_l1_reverse``
..., and ``weight``/``bias`` for the readout, as an ``nn.Linear``) or by symrnn's keys
(``layout="symrnn"``: ``l0.fwd.W`` ...), time-major inputs ``x`` (T, N, D), initial states as
PyTorch's ``h_0`` (``(num_layers * directions, N, H)``) and the targets, and returns the loss
and its gradients under the same names.  The gradients of the inputs and initial states are
judged too when the grads dict holds them, under the model's own keys ``x`` (``(T, N, D)``),
``h0`` and ``c0`` (``(num_layers * directions, N, H)``, PyTorch's row order), or spelt ``dx``,
``dh0``, ``dc0``; any other key that names no parameter is refused.
"""
from __future__ import annotations

from functools import cached_property

import numpy as np

from ..errors import UnknownNameError, UserCodeError
from ..models.layouts import from_torch_stack, to_torch_stack
from .problems import Problem
from .wired import WiredLossFunction

STACK_LAYOUTS = ("pytorch", "symrnn")
READOUT = {"V": "weight", "c": "bias"}  # an nn.Linear after the stack


class StackLayout:
    """Names of a stack's parameters in the user's code; sequences and states as PyTorch's."""

    def __init__(self, name, model):
        if name not in STACK_LAYOUTS:
            raise UnknownNameError(f"Unknown layout {name!r} for a stacked or bidirectional model; expected one of "
                                   f"{STACK_LAYOUTS} (PyTorch's state_dict names, or symrnn's l<k>.<fwd|bwd>.<name>).")
        self.name, self.model, self.names, self.batch_major = name, model, {}, False

    def _redundant(self, key):
        """The blocks of ``bias_hh`` that only repeat ``bias_ih`` (all but the GRU's n block)."""
        H = self.model.sizes["H"]
        return slice(0, 2 * H) if self.model.cell.name.startswith("gru") else slice(None)

    def to_user(self, cell_name, params, gradients=False):
        if self.name == "symrnn":
            return dict(params)
        recurrent = {k: v for k, v in params.items() if k not in READOUT}
        out = to_torch_stack(self.model.cell.name, recurrent)
        if gradients:  # d/d bias_hh equals d/d bias_ih where the two are added
            for key in [k for k in out if k.startswith("bias_hh")]:
                out[key] = np.array(out[key])
                block = self._redundant(key)
                out[key][block] = out[key.replace("bias_hh", "bias_ih")][block]
        out.update({READOUT[k]: v for k, v in params.items() if k in READOUT})
        return out

    @cached_property
    def keys(self):
        return set(self.to_user("", self.model.init_params(0)))

    def from_user(self, grads, what):
        """symrnn's gradients from the user's: every parameter present, each of its shape."""
        missing = sorted(self.keys - set(grads))
        if missing:
            raise UserCodeError(f"{what} returned no gradient for {missing}.")
        try:
            out = self._canonical({k: np.asarray(v, dtype=float) for k, v in grads.items()})
        except Exception as exc:  # a gradient of the wrong shape: say which
            raise UserCodeError(f"{what} returned gradients that do not fit the model: {exc}") from None
        for k, shape in self.model.param_shapes.items():
            if np.shape(out[k]) != shape:
                raise UserCodeError(f"{what}: the gradient for {k} has shape {np.shape(out[k])}, expected {shape}.")
        return out

    def _canonical(self, grads):
        if self.name == "symrnn":
            return dict(grads)
        readout = {v: k for k, v in READOUT.items()}
        m = self.model
        recurrent = {k: np.array(v) for k, v in grads.items() if k not in readout}
        for key in [k for k in recurrent if k.startswith("bias_hh")]:  # counted once, with bias_ih
            recurrent[key][self._redundant(key)] = 0
        flags = m.bidirectional if isinstance(m.bidirectional, (list, tuple)) else [m.bidirectional]
        out = from_torch_stack(m.cell.name, recurrent, m.num_layers, any(flags))
        out.update({readout[k]: v for k, v in grads.items() if k in readout})
        return out

    def gates(self, cell_name):
        return []

    @staticmethod
    def sequence_to_user(X):
        return X

    @staticmethod
    def state_to_user(S):
        return S


class StackLossFunction(WiredLossFunction):
    """Loss mode for a stacked or bidirectional model: ``fn(params, x, h0[, c0], y[, mask]) -> (loss, grads)``."""

    def __init__(self, model, layout, signature, fn):
        super().__init__(model, layout, signature.forward_args, fn)
        self.signature = signature

    @staticmethod
    def keys(user_params):
        return f"params ({sorted(user_params)[:4]} ...)"

    def data(self, problem, user_params):
        data = {"params": user_params, "x": problem.x, "y": problem.targets, "mask": problem.mask}
        data.update({f"{s}0": problem.h0[s] for s in self.model.state_names})
        unknown = [r for r in self.args if r not in data]
        if unknown:
            raise UnknownNameError(f"A stacked model's loss function takes params, x, h0 (c0), y and mask; the "
                                   f"signature asks for {unknown}.")
        return data

    def extra(self, grads, user_params, problem, what):
        """The inputs' and initial states' gradients, judged as dx, dh0, dc0 (the model's keys x, h0, c0)."""
        found = self._data_gradients(grads, user_params, problem, what)
        for key, _ in found.values():
            del grads[key]
        return {self.model.input_name if role == "x" else role: ("d" + role, value, value)
                for role, (_, value) in found.items()}

    def _data_gradients(self, grads, user_params, problem, what):
        """The gradients of the inputs and initial states the user returned, ``{x|h0|c0: (key, array)}``, under
        the keys ``x``, ``h0``, ``c0`` (the model's own) or ``dx``, ``dh0``, ``dc0``; shapes checked.
        Any other key that names no parameter is refused: a gradient under a misspelt name would
        otherwise go unjudged."""
        expected = {"x": problem.x.shape}
        expected.update({f"{s}0": problem.h0[s].shape for s in self.model.state_names})
        out = {}
        for key, value in grads.items():
            if key in user_params:
                continue
            role = key[1:] if key.startswith("d") and key[1:] in expected else key
            if role not in expected:
                raise UserCodeError(
                    f"{what} returned a gradient under {key!r}, which names no parameter; the keys are the "
                    f"parameters' ({sorted(user_params)[:4]} ...) and, optionally, {sorted(expected)} (or "
                    f"{sorted('d' + r for r in expected)}) for the inputs and initial states.")
            if role in out:
                raise UserCodeError(f"{what} returned the gradient of {role} twice, as {role!r} and {'d' + role!r}; "
                                    f"return one of them.")
            if np.shape(value) != expected[role]:
                meaning = ("(T, N, D), time-major" if role == "x" else
                           "(num_layers * directions, N, H), as PyTorch's h_0")
                raise UserCodeError(f"{what}: the gradient of {role} has shape {np.shape(value)}, expected "
                                    f"{expected[role]} {meaning}.")
            out[role] = (key, value)
        return out


def draw_stack(model, plan, T, label, seed, targets):
    """One problem for a stacked model: its own initialisation, PyTorch-shaped initial states."""
    rng = np.random.default_rng(seed)
    params = model.init_params(seed, scale=plan.scale)
    x = rng.normal(size=(T, plan.N, model.sizes["D"]))
    rows = len(model.rows())
    h0 = {s: 0.5 * rng.normal(size=(rows, plan.N, model.unit.state_size(s))) for s in model.state_names}
    return Problem(label, params, x, h0, targets(rng, T, plan.N))


def stack_problems(targets):
    """``strategy(model, max_T)``: Hypothesis problems for a stacked model (``search=``): a length up
    to ``max_T``, a batch of 1 to 3, weights from tiny to saturating, the arrays drawn from a seed as
    :func:`draw_stack` draws them."""
    def strategy(model, max_T):
        from hypothesis import strategies as st

        from .problems import Plan

        @st.composite
        def draw_problem(draw):
            T, N = draw(st.integers(1, max_T)), draw(st.integers(1, 3))
            scale = draw(st.sampled_from([None, 0.05, 0.5, 1.0, 2.0, 4.0]))
            seed = draw(st.integers(0, 2 ** 16))
            return draw_stack(model, Plan(T=T, N=N, scale=scale), T, f"T={T}, N={N} (drawn)", seed, targets)
        return draw_problem()
    return strategy
