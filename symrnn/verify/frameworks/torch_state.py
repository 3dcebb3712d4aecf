"""How an ``nn.Module`` takes its initial state: ``nn.LSTM``'s own signature ``forward(input, hx=None)``
with ``hx = (h_0, c_0)``, each ``(num_layers, N, H)``; ``nn.RNN``/``nn.GRU``'s ``hx`` of ``(1, N, H)``; or
a plain ``h0`` of ``(N, H)``.

The signature alone cannot tell these apart, so the module is called once on its own weights with
each form in turn (a tuple first: a tensor given to code that unpacks a tuple would be split along
its first axis without an error; the layer axis first: code that indexes it would read one batch
row of a state without one), and the first form whose output has the states' shape is kept (a
pair only when the output depends on its second state: a GRU reading ``hx[0]`` would take it too).  The
verifier then sees the roles ``x, h0, c0``; the runner packs them back into the module's form.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .adapted import role_of

#: probe sizes: no two alike (a batch read as time, or a row read as a state, changes a shape)
_T, _N = 2, 3


@dataclass(frozen=True)
class StateForm:
    """``pair``: the state is one argument ``(h0, c0)``; ``layer_axis``: each has a leading axis of 1."""

    pair: bool = False
    layer_axis: bool = False

    def describe(self) -> str:
        shape = "(1, N, H)" if self.layer_axis else "(N, H)"
        return f"hx = (h0, c0), each {shape}" if self.pair else f"hx {shape}"

    def pack(self, tensors, state_at):
        """The module's arguments from the verifier's tensors (``h0``, ``c0`` at ``state_at``)."""
        def shaped(t):
            return t.unsqueeze(0) if self.layer_axis else t
        if self.pair:
            state = (shaped(tensors[state_at]), shaped(tensors[state_at + 1]))
            return list(tensors[:state_at]) + [state] + list(tensors[state_at + 2:])
        return list(tensors[:state_at]) + [shaped(tensors[state_at])] + list(tensors[state_at + 1:])


FORMS = (StateForm(True, True), StateForm(True, False), StateForm(False, True), StateForm(False, False))


def _sizes(module, params):
    """``(D, H)`` of the module's own weights (``weight_ih``'s columns, ``weight_hh``'s), else its
    ``input_size``/``hidden_size`` attributes; None when neither tells."""
    by_role = {role_of(name.rsplit(".", 1)[-1]): p for name, p in params}
    D = by_role["Wx"].shape[-1] if "Wx" in by_role else getattr(module, "input_size", None)
    H = by_role["Wh"].shape[-1] if "Wh" in by_role else getattr(module, "hidden_size", None)
    return (D, H) if isinstance(D, int) and isinstance(H, int) else None


def _runs(module, form, roles, state_at, batch_first, sizes, like):
    D, H = sizes
    shapes = {"x": (_N, _T, D) if batch_first else (_T, _N, D), "h0": (_N, H), "c0": (_N, H)}
    roles = list(roles)
    if form.pair:
        roles.insert(state_at + 1, "c0")
    generator = torch.Generator().manual_seed(0)
    tensors = [torch.randn(shapes[r], generator=generator, dtype=torch.float64).to(like) for r in roles]
    out = _states(module, form.pack(tensors, state_at))
    if not (isinstance(out, torch.Tensor) and tuple(out.shape) == (shapes["x"][:2] + (H,))):
        return False
    if form.pair:  # the pair only if its second state is read: a GRU's hx[0] of (h0, c0) is h0 alone
        tensors[state_at + 1] = tensors[state_at + 1] + 1.0
        other = _states(module, form.pack(tensors, state_at))
        return isinstance(other, torch.Tensor) and other.shape == out.shape and not torch.equal(other, out)
    return True


def _states(module, args):
    """The first tensor the module returns on ``args`` (None when it raises)."""
    try:
        with torch.no_grad():
            out = module(*args)
    except Exception:  # noqa: BLE001 - the user's code refusing this form: try the next one
        return None
    while isinstance(out, (tuple, list)) and out:
        out = out[0]
    return out


def state_form(module, data_names, params):
    """``(form, state_at)``: how ``module`` takes its state (``state_at``: its position in the
    forward's data arguments), probed on the module's own weights; ``(None, None)`` when it has no
    lone state argument, when the plain ``(N, H)`` tensor is its form, or when no form runs (then the
    arguments are passed as they are, and any error is the user's code's own)."""
    roles = [role_of(n) for n in data_names]
    sizes = _sizes(module, params)
    if "h0" not in roles or "c0" in roles or not set(roles) <= {"x", "h0"} or sizes is None:
        return None, None
    state_at = roles.index("h0")
    like = params[0][1] if params else torch.zeros((), dtype=torch.float64)
    own = getattr(module, "batch_first", None)
    for batch_first in ([own] if isinstance(own, bool) else [False, True]):
        for form in FORMS:
            if _runs(module, form, roles, state_at, batch_first, sizes, like):
                return (None if form == StateForm() else form), state_at
    return None, None


class Packed(torch.nn.Module):
    """``module`` called with the verifier's ``x, h0, c0`` packed into its own form; its weights are
    this module's ``inner.`` ones (so the adapter sets and restores them as any module's)."""

    def __init__(self, module, form, state_at):
        super().__init__()
        self.inner, self.form, self.state_at = module, form, state_at

    def forward(self, *tensors):
        return self.inner(*self.form.pack(tensors, self.state_at))
