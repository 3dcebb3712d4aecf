"""How hand-written code is called: declarative signatures and the presets of known styles.

A signature lists, in order, what a user's function takes and returns, by role:

* data: ``x`` (inputs; ``x_ids``/``y_ids``: a list of class indices of one
  sequence, the inputs one-hot), ``h0``/``c0`` (initial or previous states; ``h0`` is the output
  state's for a cell without a state ``h``, as ``h`` is its output), ``h``/``c``
  (states out: all steps in layer mode, the next state in step mode),
  ``dh``/``dc`` (upstream gradients in), ``dh_n``/``dc_n`` (layer mode: the gradients arriving at
  the final states the code returns, as ``nn.LSTM``'s ``h_n``, ``c_n``; None in a case that sends
  none), ``dx``/``dh0``/``dc0`` (gradients out),
  ``cache`` (anything; passed back untouched), ``y`` (targets), ``mask``,
  ``loss``, ``params``/``grads`` (dicts in the layout's names), ``ignored``,
  ``k`` (or ``k1``, ``k2``: the declared truncation of truncated BPTT); for cells whose states
  are not ``h``/``c`` (LRU's ``h_re``, ``h_im``, ``out``), in layer mode: ``s0`` (every initial
  state, a dict by state name), ``states`` (some or all states at every step, a dict: the forward
  check compares each) and ``ds0`` (the initial-state gradients, a dict); ``h`` is then the
  cell's output state;
* parameters: the layout's roles ``Wx``, ``Wh``, ``W``, ``b``, ``b_hh``, ``V``,
  ``V_b`` (a parameter in the arguments, its gradient in the returns, where
  ``dWx`` ... may be written too); ``Wx[g]``, ``b[g]`` for one gate's own array (a forward taking
  one array per gate, :mod:`symrnn.verify.pergate`).
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from ..errors import UnknownNameError

DATA = {"x", "x_ids", "y_ids", "h0", "c0", "h", "c", "dh", "dc", "dh_n", "dc_n", "dx", "dh0", "dc0", "cache", "y",
        "mask", "loss", "params", "grads", "ignored", "k", "k1", "k2", "s0", "states", "ds0"}
PARAMETER_ROLES = {"Wx", "Wh", "W", "b", "b_hh", "V", "V_b"}


def gate_role(role) -> bool:
    """A parameter role of one gate's own array, ``Wx[z]`` or ``b[z]`` (a forward taking one array per
    gate: :mod:`symrnn.verify.pergate`)."""
    return isinstance(role, str) and re.fullmatch(r"(Wx|b)\[\w+\]", role) is not None


def is_parameter_role(role) -> bool:
    """A role naming a parameter (its gradient among the returns): the layout's or one gate's."""
    return role in PARAMETER_ROLES or gate_role(role)


@dataclass(frozen=True)
class Signature:
    """What a forward and a backward (or a loss function) take and return, by role.

    Roles are listed in the order of your function's arguments and results: data roles
    (``x``, ``h0``, ``c0``, ``h``, ``c``, ``dh``, ``dc``, ``dx``, ``dh0``, ``dc0``, ``cache``,
    ``y``, ``mask``, ``loss``, ``params``, ``grads``, ``ignored``, ``k``, ...) and the
    layout's parameter roles (``Wx``, ``Wh``, ``W``, ``b``, ``b_hh``, ``V``, ``V_b``; a
    gradient may be written ``dWx``).

    Parameters
    ----------
    forward_args, forward_returns : tuple of str
        The forward's (or the loss function's) arguments and results.
    backward_args, backward_returns : tuple of str
        The backward's; empty for a loss function.

    Examples
    --------
    >>> import symrnn.verify as V
    >>> V.Signature(("params", "x", "h0", "y"), ("loss", "grads")).forward_args
    ('params', 'x', 'h0', 'y')
    >>> V.Signature(("x", "h0", "Wx", "Wh", "b"), ("h", "cache"),
    ...             ("dh", "cache"), ("dx", "dh0", "dWx", "dWh", "db")).backward_returns
    ('dx', 'dh0', 'Wx', 'Wh', 'b')
    """

    forward_args: tuple
    forward_returns: tuple
    backward_args: tuple = ()
    backward_returns: tuple = ()

    def __post_init__(self):
        for field_name in ("forward_returns", "backward_returns"):  # dWx, dW_vocab ... name gradients too
            roles = tuple(r[1:] if r.startswith("d") and is_parameter_role(r[1:]) else r
                          for r in getattr(self, field_name))
            object.__setattr__(self, field_name, roles)
        for part in (self.forward_args, self.forward_returns, self.backward_args, self.backward_returns):
            unknown = [r for r in part if r not in DATA and not is_parameter_role(r)]
            if unknown:
                raise UnknownNameError(f"Unknown roles {unknown} in a signature; roles are "
                                       f"{sorted(DATA | PARAMETER_ROLES)}.")

    @property
    def has_cell_state(self) -> bool:
        return "c" in self.forward_returns or "c0" in self.forward_args


def _family(cell_name) -> str:
    if not isinstance(cell_name, str):  # a Cell: a cell state c calls like an LSTM
        return "lstm" if "c" in cell_name.states else ("gru" if cell_name.name.startswith("gru") else "rnn")
    return "lstm" if cell_name == "lstm" else ("gru" if cell_name.startswith("gru") else "rnn")


#: (preset, mode, family) -> Signature
SIGNATURES = {
    # CS231n: rnn_forward(x, h0, Wx, Wh, b) -> (h, cache); rnn_backward(dh, cache) -> (dx, dh0, dWx, dWh, db)
    ("cs231n", "layer", "rnn"): Signature(("x", "h0", "Wx", "Wh", "b"), ("h", "cache"),
                                          ("dh", "cache"), ("dx", "dh0", "Wx", "Wh", "b")),
    ("cs231n", "layer", "lstm"): Signature(("x", "h0", "Wx", "Wh", "b"), ("h", "cache"),
                                           ("dh", "cache"), ("dx", "dh0", "Wx", "Wh", "b")),
    ("cs231n", "step", "rnn"): Signature(("x", "h0", "Wx", "Wh", "b"), ("h", "cache"),
                                         ("dh", "cache"), ("dx", "dh0", "Wx", "Wh", "b")),
    ("cs231n", "step", "lstm"): Signature(("x", "h0", "c0", "Wx", "Wh", "b"), ("h", "c", "cache"),
                                          ("dh", "dc", "cache"), ("dx", "dh0", "dc0", "Wx", "Wh", "b")),
    # a loss over a batch: fn(params, x, h0, y[, mask]) -> (loss, grads)
    ("cs231n", "loss", "rnn"): Signature(("params", "x", "h0", "y", "mask"), ("loss", "grads")),
    ("cs231n", "loss", "lstm"): Signature(("params", "x", "h0", "y", "mask"), ("loss", "grads")),
    # min-char-rnn: lossFun(inputs, targets, hprev) reading module globals
    ("minchar", "loss", "rnn"): Signature(("x_ids", "y_ids", "h0"), ("loss", "Wx", "Wh", "V", "b", "V_b", "ignored")),
}


def has_signature(preset, mode, cell_name) -> bool:
    """Whether the preset ``preset`` has a calling convention in ``mode`` for the cell's family."""
    from ..models.layouts import preset_name

    return (preset_name(preset), mode, _family(cell_name)) in SIGNATURES


def signature_for(preset, mode, cell_name) -> Signature:
    if isinstance(preset, Signature):
        return preset
    from ..models.layouts import preset_name

    key = (preset_name(preset), mode, _family(cell_name))
    if key not in SIGNATURES:
        known = sorted(f"{p}/{m}/{f}" for p, m, f in SIGNATURES)
        raise UnknownNameError(
            f"No calling convention for layout {preset!r} in {mode} mode for a {_family(cell_name)} cell; known: "
            f"{known}. Pass signature=symrnn.verify.Signature(...) to describe yours.")
    return SIGNATURES[key]


#: The preset's name of the forward for a backward (CS231n: rnn_backward -> rnn_forward).
def forward_name(backward_name: str) -> str | None:
    if backward_name.endswith("_backward"):
        return backward_name[: -len("_backward")] + "_forward"
    if backward_name.endswith("backward"):
        return backward_name[: -len("backward")] + "forward"
    return None
