"""The built-in cells, written with the same public :class:`~symrnn.engine.cell.Cell` API users have.

Parameter names are canonical across symrnn: ``U`` input-to-hidden, ``W``
hidden-to-hidden, ``b`` bias, with a gate suffix for gated cells (``U_i``,
``W_f``, ``b_o`` ...).  ``symrnn.models.layouts`` converts them to and from the
stacked layouts of PyTorch, Keras and cuDNN.
"""
from __future__ import annotations

from .cell import Cell
from .symbols import tsym
from ..validation import look_up
from ..errors import UnknownNameError
import sympy as sp

from .functions import activation, exp, log_sigmoid, maximum, sigmoid, tanh
from .cells_matrix import mlstm, s6  # noqa: F401 (registered below; exported from here too)


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


# -- the recurrent cells of today (vector states) ----------------------------------------------
def _gate_params(cell, gate, role, recurrent=False):
    """``U_gate`` (H, D), ``b_gate`` (H,) and, when ``recurrent``, ``W_gate`` (H, H); returns the pre-activation."""
    U = cell.param(f"U_{gate}", "H", "D", role=f"input-to-hidden weights of the {role}")
    b = cell.param(f"b_{gate}", "H", role=f"bias of the {role}")
    pre = U @ cell.input_symbol + b
    if recurrent:
        W = cell.param(f"W_{gate}", "H", "H", role=f"hidden-to-hidden weights of the {role}")
        pre = pre + W @ tsym("h", -1)
    return pre


def min_gru() -> Cell:
    """minGRU (Feng et al. 2024, "Were RNNs All We Needed?"), sequential form.

    The gate and the candidate read only the input: ``z_t = sigmoid(U_z x_t + b_z)``,
    ``htilde_t = U_h x_t + b_h`` (no activation), ``h_t = (1 - z_t) h_{t-1} + z_t htilde_t``.
    The state recurrence is linear and diagonal: ``dh_t/dh_{t-1} = diag(1 - z_t)``.

    Examples
    --------
    >>> import symrnn as sr
    >>> sr.builtin_cell("min-gru")
    Cell 'min-gru'
      z[t] = sigmoid(b_z + MatVec(U_z, x[t]))
      htilde[t] = b_h + MatVec(U_h, x[t])
      h[t] = h[t-1]*(1 - z[t]) + htilde[t]*z[t]
    """
    cell = Cell("min-gru", "minGRU (Feng et al. 2024), sequential form")
    cell.input(role="input")
    h = cell.state("h", role="hidden state")
    z = cell.let("z", sigmoid(_gate_params(cell, "z", "update gate")), role="update gate")
    htilde = cell.let("htilde", _gate_params(cell, "h", "candidate state"), role="candidate state")
    cell.update(h, (1 - z) * h + z * htilde)
    return cell.validate()


def min_lstm() -> Cell:
    """minLSTM (Feng et al. 2024, "Were RNNs All We Needed?"), sequential form.

    ``f_t = sigmoid(U_f x_t + b_f)``, ``i_t = sigmoid(U_i x_t + b_i)``, ``htilde_t = U_h x_t + b_h``;
    the gates are normalised to sum to one, ``f'_t = f_t / (f_t + i_t)``, ``i'_t = i_t / (f_t + i_t)``,
    and ``h_t = f'_t h_{t-1} + i'_t htilde_t``.

    Examples
    --------
    >>> import symrnn as sr
    >>> cell = sr.builtin_cell("min-lstm")
    >>> list(cell.states), sorted(cell.params)
    (['h'], ['U_f', 'U_h', 'U_i', 'b_f', 'b_h', 'b_i'])
    """
    cell = Cell("min-lstm", "minLSTM (Feng et al. 2024), sequential form")
    cell.input(role="input")
    h = cell.state("h", role="hidden state")
    f = cell.let("f", sigmoid(_gate_params(cell, "f", "forget gate")), role="forget gate")
    i = cell.let("i", sigmoid(_gate_params(cell, "i", "input gate")), role="input gate")
    htilde = cell.let("htilde", _gate_params(cell, "h", "candidate state"), role="candidate state")
    f_n = cell.let("fprime", f / (f + i), role="normalised forget gate")
    i_n = cell.let("iprime", i / (f + i), role="normalised input gate")
    cell.update(h, f_n * h + i_n * htilde)
    return cell.validate()


def ind_rnn(nonlinearity: str = "relu") -> Cell:
    """IndRNN (Li et al. 2018): ``h_t = f(U x_t + w * h_{t-1} + b)``, the recurrent weight a vector ``w``.

    Each unit sees only its own past (the recurrent "matrix" is ``diag(w)``).

    Parameters
    ----------
    nonlinearity : str
        ``relu`` (the paper's choice), ``tanh`` or ``sigmoid``.

    Examples
    --------
    >>> import symrnn as sr
    >>> sr.builtin_cell("indrnn")
    Cell 'indrnn'
      h[t] = relu(b + w*h[t-1] + MatVec(U, x[t]))
    """
    f = activation(nonlinearity)
    name = "indrnn" if nonlinearity == "relu" else f"indrnn-{nonlinearity}"
    cell = Cell(name, f"IndRNN (Li et al. 2018) with {nonlinearity}")
    x = cell.input(role="input")
    h = cell.state("h", role="hidden state")
    U = cell.param("U", "H", "D", role="input-to-hidden weights")
    w = cell.param("w", "H", role="recurrent weights (one per unit)")
    b = cell.param("b", "H", role="hidden bias")
    cell.update(h, f(U @ x + w * h + b))
    return cell.validate()


SRU_HIGHWAYS = ("projection", "identity")


def sru(highway: str = "projection") -> Cell:
    """SRU (Lei et al. 2018, "Simple Recurrent Units for Highly Parallelizable Recurrence").

    ``f_t = sigmoid(U_f x_t + v_f * c_{t-1} + b_f)``, ``r_t = sigmoid(U_r x_t + v_r * c_{t-1} + b_r)``,
    ``c_t = f_t c_{t-1} + (1 - f_t) (U x_t)`` and the highway connection
    ``h_t = r_t c_t + (1 - r_t) x'_t``.  ``highway="identity"`` is the paper's ``x'_t = x_t``, so the
    input has the hidden size (``D = H``; the cell is ``sru-identity``); ``"projection"`` (the
    built-in ``sru``) reads ``x'_t = U_x x_t``, which works for any ``D`` and is the identity
    highway at ``U_x = I``.  ``h`` is a state only so that the readout and the next layer can see it:
    ``h_{t-1}`` is never read, and the gradient of ``h0`` is 0.

    Parameters
    ----------
    highway : str
        ``projection`` or ``identity``.

    Examples
    --------
    >>> import symrnn as sr
    >>> cell = sr.builtin_cell("sru")
    >>> list(cell.states), cell.output_state
    (['h', 'c'], 'h')
    >>> from symrnn.engine.cells import sru
    >>> sr.Model(sru("identity"), D=4, H=4, loss="upstream").sizes["D"]
    4
    """
    if highway not in SRU_HIGHWAYS:
        raise UnknownNameError(f"Unknown SRU highway {highway!r}; expected one of {SRU_HIGHWAYS}.")
    identity = highway == "identity"
    cell = Cell("sru-identity" if identity else "sru",
                f"SRU (Lei et al. 2018) with its highway connection ({highway})")
    x = cell.input(size="H" if identity else "D",
                   role="input (of the hidden size: the highway adds it to h)" if identity else "input")
    h = cell.state("h", role="hidden state (the highway output)")
    c = cell.state("c", role="internal state")
    U = cell.param("U", "H", "H" if identity else "D", role="input-to-hidden weights of the candidate")
    gates = {}
    for gate, role in (("f", "forget gate"), ("r", "reset gate")):
        U_g = cell.param(f"U_{gate}", "H", "H" if identity else "D", role=f"input-to-hidden weights of the {role}")
        v_g = cell.param(f"v_{gate}", "H", role=f"weights of c[t-1] in the {role} (one per unit)")
        b_g = cell.param(f"b_{gate}", "H", role=f"bias of the {role}")
        gates[gate] = cell.let(gate, sigmoid(U_g @ x + v_g * c + b_g), role=role)
    f, r = gates["f"], gates["r"]
    xtilde = cell.let("xtilde", U @ x, role="candidate")
    if not identity:
        U_x = cell.param("U_x", "H", "D", role="projection of the input on the highway")
        x = cell.let("xhat", U_x @ x, role="the input on the highway")
    c_t = cell.update(c, f * c + (1 - f) * xtilde)
    cell.update(h, r * c_t + (1 - r) * x)
    cell.output("h")
    return cell.validate()


SLSTM_FORGET_GATES = ("sigmoid", "exp")


def _head_recurrence(cell, heads):
    """sLSTM's recurrent products with ``heads`` heads: ``gate -> W_gate h_{t-1}`` with ``W_gate`` block diagonal,
    stored as its ``heads`` diagonal blocks of ``HD x HD`` (``HD = H / heads``), flattened row-major to a vector
    of size ``HW = H HD``; the product is ``F_r (W_gate * (E_c h_{t-1}))`` (:mod:`symrnn.engine.structure`), as
    mLSTM's ``C q``."""
    H = sp.Symbol("H")
    head = cell.size("HD", H / heads)
    cell.size("HW", H * H / heads)
    tile = cell.spread("E_c", "HW", "H", head, head)  # 1 h^T inside each head's block
    row_sums = cell.fold("F_r", "H", "HW", head)
    tiled = cell.let("hh", tile @ tsym("h", -1), role="the previous hidden state in every row of its head's block")

    def recurrent(gate, role):
        W = cell.param(f"W_{gate}", "HW", role=f"hidden-to-hidden weights of the {role}, one HD x HD block per head "
                                               f"(flattened row-major)")
        weighted = cell.let(f"Wh{gate}", W * tiled, role=f"each row of W_{gate} times h_{{t-1}} (summed: W_{gate} h_{{t-1}})")
        return row_sums @ weighted
    return recurrent


def _slstm_pre_activations(cell, heads):
    """``zbar, ibar, fbar, obar`` as ``U_? x_t + W_? h_{t-1} + b_?`` (``W_?`` full, or block diagonal per head)."""
    recurrent = _head_recurrence(cell, heads) if heads > 1 else None
    roles = {"z": "cell input", "i": "input gate", "f": "forget gate", "o": "output gate"}
    if recurrent is None:
        return {g: _gate_params(cell, g, role, recurrent=True) for g, role in roles.items()}
    return {g: _gate_params(cell, g, role) + recurrent(g, role) for g, role in roles.items()}


def slstm(forget_gate: str = "sigmoid", heads: int = 1) -> Cell:
    """sLSTM of xLSTM (Beck et al. 2024): exponential gating with a stabiliser and a normaliser.

    ``z_t = tanh(zbar_t)``, ``o_t = sigmoid(obar_t)``, the exponential input gate's log ``itilde_t``,
    the forget gate's log ``logf_t = log sigmoid(ftilde_t)`` (``forget_gate="sigmoid"``) or ``ftilde_t``
    (``"exp"``), each ``?bar_t = U_? x_t + W_? h_{t-1} + b_?``; the stabiliser
    ``m_t = max(logf_t + m_{t-1}, itilde_t)``, the stabilised gates ``i'_t = exp(itilde_t - m_t)`` and
    ``f'_t = exp(logf_t + m_{t-1} - m_t)``; the cell ``c_t = f'_t c_{t-1} + i'_t z_t``, the
    normaliser ``n_t = f'_t n_{t-1} + i'_t`` and ``h_t = o_t c_t / n_t``.  The states are
    ``h, c, n, m``.  The paper starts from zero states (then ``n_1 = i'_1 > 0``); an initial
    ``n0`` of either sign is accepted as long as no ``n_t`` reaches 0.

    With ``heads > 1`` the recurrent weights are block diagonal, as the paper's heads (memory mixes within
    a head, not across): each ``W_?`` is the vector of its diagonal blocks (``heads x HD x HD``, ``HD = H /
    heads``, row-major, size ``HW = H HD``; no weight off the blocks), applied by a fixed spread and fold.

    Parameters
    ----------
    forget_gate : str
        ``sigmoid`` (as in the xLSTM code) or ``exp``.
    heads : int
        The number of heads; 1 (the default) is one full ``H x H`` matrix per gate.

    Examples
    --------
    >>> import symrnn as sr
    >>> cell = sr.builtin_cell("slstm")
    >>> list(cell.states)
    ['h', 'c', 'n', 'm']
    >>> from symrnn.engine.cells import slstm
    >>> sr.Model(slstm(heads=2), D=3, H=4, K=2).param_shapes["W_z"]  # two 2 x 2 blocks
    (8,)
    """
    if forget_gate not in SLSTM_FORGET_GATES:
        raise UnknownNameError(f"Unknown sLSTM forget_gate {forget_gate!r}; expected one of {SLSTM_FORGET_GATES}.")
    if isinstance(heads, bool) or not isinstance(heads, int) or heads < 1:
        raise UnknownNameError(f"sLSTM heads must be a positive int, got {heads!r}.")
    name = ("slstm" if forget_gate == "sigmoid" else "slstm-exp") + (f"-heads{heads}" if heads > 1 else "")
    cell = Cell(name, f"sLSTM (Beck et al. 2024, xLSTM), {forget_gate} forget gate, "
                + ("one head" if heads == 1 else f"{heads} heads (block-diagonal recurrent weights)"))
    cell.input(role="input")
    h = cell.state("h", role="hidden state")
    c = cell.state("c", role="cell state")
    n = cell.state("n", role="normaliser state")
    m = cell.state("m", role="stabiliser state")
    pre = _slstm_pre_activations(cell, heads)
    z = cell.let("z", tanh(pre["z"]), role="cell input")
    ibar = cell.let("itilde", pre["i"], role="log of the input gate")  # a bar marks adjoints in the reports
    fbar = cell.let("ftilde", pre["f"], role="pre-activation of the forget gate")
    o = cell.let("o", sigmoid(pre["o"]), role="output gate")
    logf = cell.let("logf", log_sigmoid(fbar), role="log of the forget gate") if forget_gate == "sigmoid" else fbar
    m_t = cell.update(m, maximum(logf + m, ibar))
    i_s = cell.let("iprime", exp(ibar - m_t), role="stabilised input gate")
    f_s = cell.let("fprime", exp(logf + m - m_t), role="stabilised forget gate")
    c_t = cell.update(c, f_s * c + i_s * z)
    n_t = cell.update(n, f_s * n + i_s)
    cell.update(h, o * c_t / n_t)
    cell.output("h")
    return cell.validate()


def lru() -> Cell:
    """LRU (Orvieto et al. 2023, "Resurrecting Recurrent Neural Networks for Long Sequences").

    The complex diagonal recurrence ``s_t = lambda * s_{t-1} + gamma * (B x_t)`` with
    ``lambda = exp(-exp(nu) + i exp(theta))``, the normalisation ``gamma = sqrt(1 - |lambda|^2)``,
    a complex ``B = B_re + i B_im`` of shape (H, D) and the real readout
    ``out_t = Re(C s_t) + d * x_t`` (the paper's ``y_t = Re(C s_t) + D x_t``) with ``C = C_re + i C_im``
    of shape (D, H) and the paper's diagonal feedthrough ``D = diag(d)`` (its output has the input's size).
    The complex state is written as two real states, its real part ``h_re`` and its imaginary
    part ``h_im`` (size ``H``, the paper's ``N``); the output ``out`` (size ``D``) is a state only so
    that the readout and the next layer can see it: ``out_{t-1}`` is never read and the gradient
    of ``out0`` is 0.  ``|lambda_k| = exp(-exp(nu_k)) < 1`` for every real ``nu``.  ``gamma`` is
    computed from ``nu`` as the issue asks (the paper's code also offers it as a separate trainable
    ``gamma_log``, initialised to this value; a user cell can declare it so).

    Examples
    --------
    >>> import symrnn as sr
    >>> cell = sr.builtin_cell("lru")
    >>> list(cell.states), cell.output_state
    (['h_re', 'h_im', 'out'], 'out')
    >>> sorted(cell.params)
    ['B_im', 'B_re', 'C_im', 'C_re', 'd', 'nu', 'theta']
    """
    cell = Cell("lru", "LRU (Orvieto et al. 2023), complex diagonal state as real and imaginary parts")
    x = cell.input(role="input")
    h_re = cell.state("h_re", role="real part of the complex state")
    h_im = cell.state("h_im", role="imaginary part of the complex state")
    out = cell.state("out", size="D", role="output Re(C s) + D x (never read back)")
    nu = cell.param("nu", "H", role="log of minus the log of the modulus of lambda")
    theta = cell.param("theta", "H", role="log of the phase of lambda")
    B = {p: cell.param(f"B_{p}", "H", "D", role=f"{part} part of the input matrix B")
         for p, part in (("re", "real"), ("im", "imaginary"))}
    C = {p: cell.param(f"C_{p}", "D", "H", role=f"{part} part of the output matrix C")
         for p, part in (("re", "real"), ("im", "imaginary"))}
    d = cell.param("d", "D", role="feedthrough weights (the diagonal of the paper's D)")
    r = cell.let("r", exp(-exp(nu)), role="modulus |lambda|")
    phi = cell.let("phi", exp(theta), role="phase arg(lambda)")
    lam_re = cell.let("lam_re", r * sp.cos(phi), role="real part of lambda")
    lam_im = cell.let("lam_im", r * sp.sin(phi), role="imaginary part of lambda")
    gamma = cell.let("gamma", sp.sqrt(1 - r ** 2), role="normalisation sqrt(1 - |lambda|^2)")
    bx_re = cell.let("bx_re", B["re"] @ x, role="real part of B x")
    bx_im = cell.let("bx_im", B["im"] @ x, role="imaginary part of B x")
    s_re = cell.update(h_re, lam_re * h_re - lam_im * h_im + gamma * bx_re)
    s_im = cell.update(h_im, lam_re * h_im + lam_im * h_re + gamma * bx_im)
    cell.update(out, C["re"] @ s_re - C["im"] @ s_im + d * x)
    cell.output("out")
    cell.written_in_the_paper(
        "The paper writes the cell in complex numbers, with a diagonal state $s_{t} \\in \\mathbb{C}^{H}$, "
        "complex matrices $B$ and $C$ and $D = \\operatorname{diag}(d)$:",
        [(r"\lambda", r"\exp\left(-e^{\nu} + i e^{\theta}\right)"),
         (r"\gamma", r"\sqrt{1 - \lvert \lambda \rvert^{2}}"),
         (r"s_{t}", r"\lambda \odot s_{t-1} + \gamma \odot \left(B x_{t}\right)"),
         (r"out_{t}", r"\operatorname{Re}\left(C s_{t}\right) + D x_{t}")],
        "The paper's $y_{t}$ is $out_{t}$ here ($y_{t}$ is the target). What is differentiated is the real "
        "split of these equations, written below: $s_{t} = h_{re,t} + i\\, h_{im,t}$, "
        "$\\lambda = lam_{re} + i\\, lam_{im}$ with "
        "$r = \\lvert \\lambda \\rvert = e^{-e^{\\nu}}$ and $\\phi = e^{\\theta}$, $B = B_{re} + i B_{im}$ and "
        "$C = C_{re} + i C_{im}$, so that $\\operatorname{Re}(C s_{t}) = C_{re} h_{re,t} - C_{im} h_{im,t}$.")
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
    "min-gru": min_gru,
    "min-lstm": min_lstm,
    "indrnn": ind_rnn,
    "sru": sru,
    "slstm": slstm,
    "slstm-exp": lambda: slstm("exp"),
    "lru": lru,
    "mlstm": mlstm,
    "s6": s6,
}

#: the paper each built-in cell of today follows (``symrnn cells`` prints it)
PAPERS = {
    "min-gru": "Feng et al. 2024, Were RNNs All We Needed? (minGRU, sequential form)",
    "min-lstm": "Feng et al. 2024, Were RNNs All We Needed? (minLSTM, sequential form)",
    "indrnn": "Li et al. 2018, Independently Recurrent Neural Network (IndRNN)",
    "sru": "Lei et al. 2018, Simple Recurrent Units for Highly Parallelizable Recurrence (highway through "
           "U_x x; symrnn.engine.cells.sru('identity') is the paper's x itself, D = H)",
    "slstm": "Beck et al. 2024, xLSTM: Extended Long Short-Term Memory (sLSTM, sigmoid forget gate, one head; "
             "symrnn.engine.cells.slstm(forget_gate, heads) for heads: block-diagonal recurrent weights)",
    "slstm-exp": "Beck et al. 2024, xLSTM: Extended Long Short-Term Memory (sLSTM, exponential forget gate)",
    "lru": "Orvieto et al. 2023, Resurrecting Recurrent Neural Networks for Long Sequences (LRU; the complex "
           "state as real and imaginary parts h_re, h_im; gamma = sqrt(1 - |lambda|^2) from nu)",
    "mlstm": "Beck et al. 2024, xLSTM: Extended Long Short-Term Memory (mLSTM, matrix memory, heads of size 2, "
             "sigmoid forget gate; symrnn.engine.cells_matrix.mlstm(head_size, forget_gate) for others)",
    "s6": "Gu and Dao 2023, Mamba: Linear-Time Sequence Modeling with Selective State Spaces (S6, state size 2, "
          "Bbar = Delta B; symrnn.engine.cells_matrix.s6(state_size, 'zoh') for the exact zero-order hold)",
}


def builtin_cell(name: str) -> Cell:
    """A built-in cell by name (see :data:`BUILTIN_CELLS`).

    Examples
    --------
    >>> import symrnn as sr
    >>> sr.builtin_cell("gru-chung").name
    'gru-chung'
    """
    return look_up(BUILTIN_CELLS, name, "cell")()
