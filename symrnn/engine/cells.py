"""The built-in cells, written with the same public :class:`~symrnn.engine.cell.Cell` API users have.

Parameter names are canonical across symrnn: ``U`` input-to-hidden, ``W``
hidden-to-hidden, ``b`` bias, with a gate suffix for gated cells (``U_i``,
``W_f``, ``b_o`` ...).  ``symrnn.models.layouts`` converts them to and from the
stacked layouts of PyTorch, Keras and cuDNN.
"""
from __future__ import annotations

from .cell import Cell
from ..errors import UnknownNameError
from .functions import activation, sigmoid, tanh


def rnn(nonlinearity: str = "tanh") -> Cell:
    """Vanilla (Elman) RNN: ``a_t = U x_t + W h_{t-1} + b``, ``h_t = f(a_t)``.

    Parameters
    ----------
    nonlinearity : str
        ``tanh``, ``relu`` or ``sigmoid``.

    Returns
    -------
    Cell

    Examples
    --------
    >>> import symrnn as sr
    >>> sr.rnn("relu")
    Cell 'rnn-relu'
      a[t] = b + MatVec(U, x[t]) + MatVec(W, h[t-1])
      h[t] = relu(a[t])
    """
    f = activation(nonlinearity)
    cell = Cell(f"rnn-{nonlinearity}", f"vanilla RNN with {nonlinearity}")
    x = cell.input(role="input")
    h = cell.state("h", role="hidden state")
    U = cell.param("U", "H", "D", role="input-to-hidden weights")
    W = cell.param("W", "H", "H", role="hidden-to-hidden weights")
    b = cell.param("b", "H", role="hidden bias")
    a = cell.let("a", U @ x + W @ h + b, role="pre-activation")
    cell.update(h, f(a))
    return cell.validate()


def lstm() -> Cell:
    """LSTM with forget, input and output gates and a cell state ``c``.

    ``i, f, o = sigmoid(U_* x_t + W_* h_{t-1} + b_*)``, ``g = tanh(U_g x_t + W_g h_{t-1} + b_g)``,
    ``c_t = f c_{t-1} + i g``, ``h_t = o tanh(c_t)``.

    Examples
    --------
    >>> import symrnn as sr
    >>> cell = sr.lstm()
    >>> list(cell.states), sorted(cell.params)[:4]
    (['h', 'c'], ['U_f', 'U_g', 'U_i', 'U_o'])
    """
    cell = Cell("lstm", "LSTM (gates i, f, g, o; cell state c)")
    x = cell.input(role="input")
    h = cell.state("h", role="hidden state")
    c = cell.state("c", role="cell state")
    gates = {}
    for gate, fn, role in (("i", sigmoid, "input gate"), ("f", sigmoid, "forget gate"),
                           ("g", tanh, "candidate cell"), ("o", sigmoid, "output gate")):
        U = cell.param(f"U_{gate}", "H", "D", role=f"input-to-hidden weights of the {role}")
        W = cell.param(f"W_{gate}", "H", "H", role=f"hidden-to-hidden weights of the {role}")
        b = cell.param(f"b_{gate}", "H", role=f"bias of the {role}")
        gates[gate] = cell.let(gate, fn(U @ x + W @ h + b), role=role)
    c_t = cell.update(c, gates["f"] * c + gates["i"] * gates["g"])
    cell.update(h, gates["o"] * tanh(c_t))
    cell.output("h")
    return cell.validate()


GRU_UPDATE_CONVENTIONS = ("pytorch", "chung")


def gru(reset_after: bool = True, update_convention: str = "pytorch") -> Cell:
    """GRU in the conventions met in the wild.

    ``reset_after=True`` (PyTorch, cuDNN, Keras default): the reset gate
    multiplies the recurrent product and its bias,
    ``n = tanh(U_n x + b_n + r * (W_n h + b_hn))``.
    ``reset_after=False`` (Cho et al. 2014, d2l, Keras ``reset_after=False``):
    it multiplies the state before the product, ``n = tanh(U_n x + W_n (r * h) + b_n)``.

    ``update_convention="pytorch"`` (PyTorch, Keras, Cho): ``h = (1 - z) n + z h_prev``;
    ``"chung"`` (Chung et al. 2014): ``h = (1 - z) h_prev + z n``.

    Examples
    --------
    >>> import symrnn as sr
    >>> sr.gru(reset_after=False, update_convention="chung").name
    'gru-reset-before-chung'
    >>> "b_hn" in sr.gru().params          # the recurrent candidate bias of reset-after
    True
    """
    if update_convention not in GRU_UPDATE_CONVENTIONS:
        raise UnknownNameError(
            f"Unknown GRU update_convention {update_convention!r}; expected one of {GRU_UPDATE_CONVENTIONS}."
        )
    name = "gru" + ("" if reset_after else "-reset-before") + ("" if update_convention == "pytorch" else "-chung")
    cell = Cell(name, f"GRU, reset {'after' if reset_after else 'before'} the recurrent product, "
                      f"{'PyTorch' if update_convention == 'pytorch' else 'Chung et al.'}'s update convention")
    x = cell.input(role="input")
    h = cell.state("h", role="hidden state")
    p = {}
    for gate, role in (("r", "reset gate"), ("z", "update gate"), ("n", "candidate state")):
        p["U", gate] = cell.param(f"U_{gate}", "H", "D", role=f"input-to-hidden weights of the {role}")
        p["W", gate] = cell.param(f"W_{gate}", "H", "H", role=f"hidden-to-hidden weights of the {role}")
        p["b", gate] = cell.param(f"b_{gate}", "H", role=f"bias of the {role}")
    r = cell.let("r", sigmoid(p["U", "r"] @ x + p["W", "r"] @ h + p["b", "r"]), role="reset gate")
    z = cell.let("z", sigmoid(p["U", "z"] @ x + p["W", "z"] @ h + p["b", "z"]), role="update gate")
    if reset_after:
        b_hn = cell.param("b_hn", "H", role="recurrent bias of the candidate, inside the reset")
        n = cell.let("n", tanh(p["U", "n"] @ x + p["b", "n"] + r * (p["W", "n"] @ h + b_hn)),
                     role="candidate state")
    else:
        s = cell.let("s", r * h, role="reset state")
        n = cell.let("n", tanh(p["U", "n"] @ x + p["W", "n"] @ s + p["b", "n"]), role="candidate state")
    if update_convention == "pytorch":
        cell.update(h, (1 - z) * n + z * h)
    else:
        cell.update(h, (1 - z) * h + z * n)
    return cell.validate()


BUILTIN_CELLS = {
    "rnn-tanh": lambda: rnn("tanh"),
    "rnn-relu": lambda: rnn("relu"),
    "rnn-sigmoid": lambda: rnn("sigmoid"),
    "lstm": lstm,
    "gru": lambda: gru(True, "pytorch"),
    "gru-reset-before": lambda: gru(False, "pytorch"),
    "gru-chung": lambda: gru(True, "chung"),
    "gru-reset-before-chung": lambda: gru(False, "chung"),
}


def builtin_cell(name: str) -> Cell:
    """A built-in cell by name (see :data:`BUILTIN_CELLS`).

    Examples
    --------
    >>> import symrnn as sr
    >>> sr.builtin_cell("gru-chung").name
    'gru-chung'
    """
    try:
        return BUILTIN_CELLS[name]()
    except KeyError:
        raise UnknownNameError(f"Unknown cell {name!r}; expected one of {sorted(BUILTIN_CELLS)}.") from None
