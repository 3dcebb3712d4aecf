"""symrnn's own names as a layout: hand-written code that takes the parameters as a dict keyed like
``model.init_params()`` (``U_z``, ``w``, ``v_f`` ...), time-major ``(T, N, D)`` sequences and
``(N, H)`` states.  It fits every cell, including those whose parameters no gate-stacking layout
describes (per-unit recurrent vectors, gates without recurrent weights: IndRNN, SRU, minGRU)."""
from __future__ import annotations

from dataclasses import dataclass

from ...errors import ParameterError
from .declared import Layout
from .gates import as_array, check_shape


@dataclass(frozen=True)
class NativeLayout(Layout):
    """Parameters and gradients under symrnn's names, unstacked; see :data:`NATIVE`.

    Examples
    --------
    >>> import symrnn as sr
    >>> from symrnn.models.layouts import NATIVE
    >>> model = sr.Model("indrnn", D=2, H=3, loss="upstream")
    >>> sorted(NATIVE.to_user(model.cell, model.init_params(0)))
    ['U', 'b', 'w']
    """

    native = True

    def gates(self, cell_name) -> tuple:
        return ()

    def to_user(self, cell_name, params, *, gradients=False) -> dict:
        return {k: v for k, v in params.items()}

    def from_user(self, cell_name, user, sizes, *, gradients=False) -> dict:
        if not isinstance(user, dict):
            raise ParameterError(f"Layout {self.name!r}: expected a dict keyed by symrnn's names, got "
                                 f"{type(user).__name__}.")
        expected = [k for k, spec in cell_name.params.items() if not spec.fixed] + (["V", "c"] if sizes.get("K") else [])
        missing = [k for k in expected if k not in user]
        if missing:
            raise ParameterError(f"Layout {self.name!r}: missing {missing}; expected the arrays {expected} "
                                 f"(symrnn's names for cell {cell_name.name!r}).")
        shapes = {k: cell_name.param_shape(k, sizes) for k in cell_name.params}
        if sizes.get("K"):
            shapes.update(V=(sizes["K"], sizes["H"]), c=(sizes["K"],))
        out = {}
        for k in expected:
            out[k] = as_array(user[k], k)
            check_shape(out[k], shapes[k], k, f"parameter {k} of {cell_name.name!r} with sizes "
                                               f"{ {s: v for s, v in sizes.items() if v} }")
        return out


#: the layout of code written with symrnn's names (pass ``layout=NATIVE`` and a signature with
#: ``params`` and ``grads``, e.g. ``Signature(("x", "h0", "params"), ("h", "cache"), ("dh", "cache"),
#: ("dx", "dh0", "grads"))``)
NATIVE = NativeLayout("symrnn", {})
