"""Built-in cells with matrix-valued states: mLSTM of xLSTM and the selective state space of Mamba (S6).

Their matrix states are flattened vectors and their outer products, products with the
state and reductions are spreads and folds (:mod:`symrnn.engine.structure`); parameter
names follow :mod:`symrnn.engine.cells` (``W_q`` reads the input, ``b_q`` is a bias).
"""
from __future__ import annotations

import sympy as sp

from .cell import Cell
from .symbols import parse
from .functions import absolute, exp, log_sigmoid, maximum, sigmoid, softplus
from ..errors import UnknownNameError

MLSTM_FORGET_GATES = ("sigmoid", "exp")


def _check_options(cell, size_name, size, choice_name, choice, choices):
    if choice not in choices:
        raise UnknownNameError(f"Unknown {cell} {choice_name} {choice!r}; expected one of {choices}.")
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise UnknownNameError(f"{cell} {size_name} must be a positive int, got {size!r}.")


def _projection(cell, name, rows, role, bias=True):
    """``W_name @ x (+ b_name)`` with ``W_name`` of shape ``(rows, D)``."""
    W = cell.param(f"W_{name}", rows, cell.sizes[cell.input_symbol], role=f"input weights of the {role}")
    pre = W @ cell.input_symbol
    return pre + cell.param(f"b_{name}", rows, role=f"bias of the {role}") if bias else pre


def _mlstm_structure(cell, head_size):
    """The head sizes and the spreads and folds of mLSTM; returns them by role."""
    H = sp.Symbol("H")
    cell.size("NH", H / head_size)  # heads
    cell.size("HM", H * head_size)  # the flattened memories of all heads: NH x head_size x head_size
    return dict(
        gate_h=cell.spread("E_h", "H", "NH", head_size, notation="scalar"),  # a head's gate over its units
        gate_m=cell.spread("E_m", "HM", "NH", head_size * head_size, notation="scalar"),  # ... over its memory
        rows=cell.spread("E_r", "HM", "H", head_size),  # v 1^T in every head
        cols=cell.spread("E_c", "HM", "H", head_size, head_size),  # 1 k^T in every head
        row_sums=cell.fold("F_r", "H", "HM", head_size),  # C q = F_r (C * E_c q)
        head_sums=cell.fold("F_h", "NH", "H", head_size, notation="dot"))  # n^T q per head = F_h (n * q)


def mlstm(head_size: int = 2, forget_gate: str = "sigmoid") -> Cell:
    """mLSTM of xLSTM (Beck et al. 2024): matrix memory, exponential input gate, stabiliser, heads.

    With ``d = head_size`` and ``NH = H / d`` heads, per head: ``q_t = W_q x_t + b_q``,
    ``k_t = W_k x_t / sqrt(d) + b_k``, ``v_t = W_v x_t + b_v`` (each of size ``d``), the scalar gate
    pre-activations ``ibar_t = W_i x_t + b_i`` and ``fbar_t = W_f x_t + b_f`` (one per head),
    ``o_t = sigmoid(W_o x_t + b_o)``; ``logf_t = log sigmoid(fbar_t)`` (``forget_gate="sigmoid"``, as in
    the xLSTM code) or ``fbar_t`` (``"exp"``); the stabiliser ``m_t = max(logf_t + m_{t-1}, ibar_t)``,
    ``i'_t = exp(ibar_t - m_t)``, ``f'_t = exp(logf_t + m_{t-1} - m_t)``; the memory
    ``C_t = f'_t C_{t-1} + i'_t v_t k_t^T`` (``d x d``), the normaliser ``n_t = f'_t n_{t-1} + i'_t k_t``
    and ``h_t = o_t * (C_t q_t) / max(|n_t^T q_t|, exp(-m_t))``.  The lower bound ``exp(-m_t)`` is the
    paper's ``1`` for the stabilised states (``C_t`` and ``n_t`` are the paper's times ``exp(-m_t)``), so
    the cell equals the unstabilised one in value and gradient.  The states are ``h`` (read only by the
    readout), ``C`` (all heads' memories, flattened row-major, size ``HM = H d``), ``n`` and ``m``.

    Parameters
    ----------
    head_size : int
        ``d``; the hidden size ``H`` must be a multiple of it.
    forget_gate : str
        ``sigmoid`` or ``exp``.

    Examples
    --------
    >>> import symrnn as sr
    >>> cell = sr.builtin_cell("mlstm")
    >>> list(cell.states), sr.Model(cell, D=3, H=4, K=2).sizes["HM"]
    (['h', 'C', 'n', 'm'], 8)
    """
    _check_options("mLSTM", "head_size", head_size, "forget_gate", forget_gate, MLSTM_FORGET_GATES)
    name = "mlstm" + ("" if (head_size, forget_gate) == (2, "sigmoid") else f"-d{head_size}-{forget_gate}")
    cell = Cell(name, f"mLSTM (Beck et al. 2024, xLSTM), heads of size {head_size}, {forget_gate} forget gate")
    cell.input(role="input")
    h, E = cell.state("h", role="hidden state (read by the readout only)"), _mlstm_structure(cell, head_size)
    C = cell.state("C", "HM", role="matrix memory of every head")
    n = cell.state("n", role="normaliser state")
    m = cell.state("m", "NH", role="stabiliser state (one per head)")
    q = cell.let("q", _projection(cell, "q", "H", "query"), role="query")
    k = cell.let("k", _projection(cell, "k", "H", "key", bias=False) / sp.sqrt(head_size)
                 + cell.param("b_k", "H", role="bias of the key"),
                 role=f"key, scaled by 1/sqrt(d) (head size d = {head_size})")
    v = cell.let("v", _projection(cell, "v", "H", "value"), role="value")
    ibar = cell.let("itilde", _projection(cell, "i", "NH", "input gate"), role="log of the input gate")
    fbar = cell.let("ftilde", _projection(cell, "f", "NH", "forget gate"), role="pre-activation of the forget gate")
    o = cell.let("o", sigmoid(_projection(cell, "o", "H", "output gate")), role="output gate")
    logf = cell.let("logf", log_sigmoid(fbar), role="log of the forget gate") if forget_gate == "sigmoid" else fbar
    m_t = cell.update(m, maximum(logf + m, ibar))
    i_s = cell.let("iprime", exp(ibar - m_t), role="stabilised input gate")
    f_s = cell.let("fprime", exp(logf + m - m_t), role="stabilised forget gate")
    vk = cell.let("vk", (E["rows"] @ v) * (E["cols"] @ k), role="outer product v k^T")
    C_t = cell.update(C, (E["gate_m"] @ f_s) * C + (E["gate_m"] @ i_s) * vk)
    n_t = cell.update(n, (E["gate_h"] @ f_s) * n + (E["gate_h"] @ i_s) * k)
    Cw = cell.let("Cw", C_t * (E["cols"] @ q), role="the memory weighted by the query (each row times q^T)")
    Cq = cell.let("Cq", E["row_sums"] @ Cw, role="the memory read by the query, C q")
    nw = cell.let("nw", n_t * q, role="the normaliser weighted by the query")
    nq = cell.let("nq", E["head_sums"] @ nw, role="n^T q per head")
    den = cell.let("den", maximum(absolute(nq), exp(-m_t)), role="the normaliser max(|n^T q|, exp(-m))")
    cell.update(h, o * Cq / (E["gate_h"] @ den))
    cell.output("h")
    return cell.validate()


S6_B_BARS = ("euler", "zoh")


def s6(state_size: int = 2, b_bar: str = "euler", projection: bool = True) -> Cell:
    """The selective diagonal state space of Mamba (S6, Gu and Dao 2023) on ``H`` channels.

    The channels are ``u_t = W_u x_t`` (``projection=True``, the built-in ``s6``: any input size ``D``, as
    the Mamba block's input projection) or the input itself (``projection=False``: ``D = H``, the paper's
    S6 alone).  ``Delta_t = softplus(W_dt u_t + b_dt)`` (one step size per channel; the paper's rank-1
    ``Linear_1`` and the code's low rank are special cases of the full ``W_dt``), ``B_t = W_B u_t`` and
    ``C_t = W_C u_t`` (size ``N = state_size``, shared by the channels), ``A = -exp(A_log)`` diagonal
    (``H x N``); zero-order hold ``Abar_t = exp(Delta_t A)`` (the let ``Ahat``: in the reports a bar marks
    adjoints) with ``Bbar_t = Delta_t B_t`` (``b_bar="euler"``, as in the paper's reference code) or the exact ``Bbar_t = (exp(Delta_t A) - 1) / A * B_t`` (``"zoh"``);
    ``s_t = Abar_t * s_{t-1} + Bbar_t u_t`` (each channel's state of size ``N``, flattened ``H x N``
    row-major) and the output ``y_t = C_t^T s_t + d * u_t`` per channel.  The states are ``s`` and ``h``
    (the output ``y_t``, named ``h`` as every cell's output, ``y`` being the targets; read by the readout
    only, so ``h0`` is never read).

    Examples
    --------
    >>> import symrnn as sr
    >>> sr.Model("s6", D=2, H=3, K=2).sizes["HN"]
    6
    """
    _check_options("S6", "state_size", state_size, "b_bar", b_bar, S6_B_BARS)
    name = "s6" + ("" if (state_size, b_bar) == (2, "euler") else f"-n{state_size}-{b_bar}") \
        + ("" if projection else "-channels")
    cell = Cell(name, f"S6 (Gu and Dao 2023, Mamba), state size {state_size}, Bbar by {b_bar}"
                + ("" if projection else ", on the input's channels"))
    x = cell.input(size="D" if projection else "H", role="input" if projection else "input (one channel per unit)")
    cell.size("SN", state_size)
    cell.size("HN", sp.Symbol("H") * state_size)
    s = cell.state("s", "HN", role="state (H channels x N, flattened)")
    h = cell.state("h", role="the output y_t (read by the readout only; y names the targets)")
    per_state = cell.spread("E_s", "HN", "H", state_size)  # a channel's value over its N states: v 1^T
    shared = cell.spread("E_n", "HN", "SN", "H", state_size)  # B_t, C_t over the channels
    readout = cell.fold("F_s", "H", "HN", state_size)  # sum over a channel's states
    if projection:
        x = cell.let("u", cell.param("W_u", "H", "D", role="input projection") @ x, role="the channels")
    W_d = cell.param("W_dt", "H", "H", role="weights of the step size")
    delta = cell.let("Delta", softplus(W_d @ x + cell.param("b_dt", "H", role="bias of the step size")),
                     role="step size")
    B = cell.let("B", cell.param("W_B", "SN", "H", role="weights of B") @ x, role="input matrix B_t")
    Cm = cell.let("C", cell.param("W_C", "SN", "H", role="weights of C") @ x, role="output matrix C_t")
    A = cell.let("A", -exp(cell.param("A_log", "HN", role="log of -A")), role="diagonal A")
    abar = cell.let("Ahat", exp((per_state @ delta) * A),  # the paper's Abar_t: a bar marks adjoints here
                    role="discretised A (zero-order hold; the paper's A bar)")
    if b_bar == "euler":  # (Delta_t u_t) B_t^T per channel: the paper's Bbar_t u_t with Bbar_t = Delta_t B_t
        scaled = cell.let(f"{parse(x)[0]}tilde", delta * x, role="the input scaled by the step size; times B_t^T, "
                          "the paper's discretised input Bbar_t u_t (Bbar_t = Delta_t B_t)")
        bx = (per_state @ scaled) * (shared @ B)
    else:
        bx = (abar - 1) / A * (shared @ B) * (per_state @ x)
    s_t = cell.update(s, abar * s + bx)
    sw = cell.let("sw", s_t * (shared @ Cm), role="the state weighted by C_t (each channel's row times C_t^T)")
    read = cell.let("Cs", readout @ sw, role="C_t^T s_t per channel")
    cell.update(h, read + cell.param("d", "H", role="skip weights") * x)
    cell.output("h")
    return cell.validate()
