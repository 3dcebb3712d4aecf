"""Declared layouts of hand-written code (:class:`Layout`) and the presets of the systems users
come from (:data:`LAYOUTS`: PyTorch, Keras, CS231n, min-char-rnn, Deep Learning from Scratch 2)."""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from ...errors import ParameterError, ShapeError, UnknownNameError
from .gates import as_array, block_name, canonical_gate_order, canonical_names, cell_gates, check_shape, resets_after

# -- declarative layouts of hand-written code ------------------------------------------
_ROLES = ("Wx", "Wh", "W", "b", "b_hh", "V", "V_b")
_STACKED_ROLES = ("Wx", "Wh", "W", "b", "b_hh")  # a tuple of names: one array per gate, in gate_order


@dataclass(frozen=True)
class Layout:
    """How a hand-written implementation lays out a cell's parameters, inputs and states.

    Parameters
    ----------
    name : str
        For messages (``"cs231n"``).
    names : dict
        The user's name for each role: ``"Wx"`` (input weights), ``"Wh"`` (recurrent
        weights), or ``"W"`` (one matrix over ``[x, h]`` or ``[h, x]``), ``"b"``,
        ``"b_hh"`` (a second bias), ``"V"``, ``"V_b"`` (readout weights and bias: symrnn's
        ``V`` and ``c``).
    gate_order : tuple of str
        The user's stacking order of symrnn's gate names (LSTM ``i f g o``, GRU
        ``r z n``), e.g. ``("i", "f", "o", "g")`` for CS231n; ``()`` for a plain RNN.
    convention : ``"column"`` or ``"row"``
        ``W x`` with ``W`` shaped ``(G*H, D)`` (PyTorch), or ``x W`` with ``W``
        shaped ``(D, G*H)`` (Keras, CS231n).
    stacking : ``"separate"``, ``"xh"`` or ``"hx"``
        Input and recurrent weights apart, or one matrix acting on the
        concatenation ``[x, h]`` / ``[h, x]``.
    bias_shape : ``"flat"``, ``"row"`` or ``"column"``
        ``(G*H,)``, ``(1, G*H)`` or ``(G*H, 1)`` (and the same for the readout bias).
    vectors : ``"rows"`` or ``"columns"``
        States and inputs of a batch as rows ``(N, H)`` or as columns ``(H, N)``
        (min-char-rnn's column vectors).
    batch_major : bool
        Sequences as ``(N, T, D)`` instead of symrnn's ``(T, N, D)``.
    forget_bias : float
        A constant added to the forget gate's bias at run time and not stored
        (TF1's ``forget_bias=1.0``): symrnn's ``b_f`` is the stored one plus it.

    A layout converts both ways, for parameters and for gradients (a gradient
    dict with the input and initial states in it converts too); an array that
    does not fit is refused with the shape expected and the shape given.
    """

    name: str
    names: dict
    gate_order: tuple = ()
    convention: str = "column"
    stacking: str = "separate"
    bias_shape: str = "flat"
    vectors: str = "rows"
    batch_major: bool = False
    forget_bias: float = 0.0

    def __post_init__(self):
        for field_name, allowed in (("convention", ("column", "row")), ("stacking", ("separate", "xh", "hx")),
                                    ("bias_shape", ("flat", "row", "column")), ("vectors", ("rows", "columns"))):
            if getattr(self, field_name) not in allowed:
                raise UnknownNameError(f"Layout {self.name!r}: {field_name}={getattr(self, field_name)!r}; "
                                       f"expected one of {allowed}.")
        for role, name in self.names.items():
            if isinstance(name, tuple) and role not in _STACKED_ROLES:
                raise UnknownNameError(f"Layout {self.name!r}: names[{role!r}] is a tuple; only {_STACKED_ROLES} may "
                                       f"be given gate by gate.")
        unknown = set(self.names) - set(_ROLES)
        if unknown:
            raise UnknownNameError(f"Layout {self.name!r}: unknown roles {sorted(unknown)}; roles are {_ROLES}.")

    # -- gates ------------------------------------------------------------------------
    def gates(self, cell_name) -> tuple:
        canonical = canonical_gate_order(cell_name)
        if canonical == ("",):
            return canonical
        if sorted(self.gate_order) != sorted(canonical):
            raise UnknownNameError(
                f"Layout {self.name!r} stacks the gates {self.gate_order}, but cell "
                f"{cell_name if isinstance(cell_name, str) else cell_name.name!r} has the gates "
                f"{canonical}; give gate_order as an ordering of {canonical}.")
        return tuple(self.gate_order)

    # -- parameters -------------------------------------------------------------------
    def _bias(self, vector):
        return {"flat": vector, "row": vector[None, :], "column": vector[:, None]}[self.bias_shape]

    def _matrix(self, blocks):
        """Canonical (rows, in) blocks stacked along the gate axis in the user's convention."""
        stacked = np.concatenate(blocks, axis=0)
        return stacked if self.convention == "column" else stacked.T

    def to_user(self, cell_name, params, *, gradients=False) -> dict:
        """Canonical ``params`` (or gradients, with ``gradients=True``) in this layout's names and shapes."""
        gates = self.gates(cell_name)
        out = {}
        U = [params[block_name("U", g)] for g in gates]
        W = [params[block_name("W", g)] for g in gates]
        if self.stacking == "separate":
            out[self.names["Wx"]] = self._matrix(U)
            out[self.names["Wh"]] = self._matrix(W)
        else:
            pairs = [np.concatenate((u, w) if self.stacking == "xh" else (w, u), axis=1) for u, w in zip(U, W)]
            out[self.names["W"]] = self._matrix(pairs)
        b = [np.array(params[block_name("b", g)], copy=True) for g in gates]
        if not gradients and self.forget_bias and "f" in gates:
            b[gates.index("f")] = b[gates.index("f")] - self.forget_bias
        reset_after = resets_after(cell_name)
        if "b_hh" in self.names:
            b_hh = [np.array(params["b_hn"]) if g == "n" and reset_after else
                    (np.array(params[block_name("b", g)]) if gradients else np.zeros_like(params[block_name("b", g)]))
                    for g in gates]
            out[self.names["b_hh"]] = self._bias(np.concatenate(b_hh))
        elif reset_after:
            raise UnknownNameError(
                f"Cell {getattr(cell_name, 'name', cell_name)!r} has a recurrent candidate bias b_hn; layout "
                f"{self.name!r} has one bias. Give the layout a second bias (names['b_hh']) or use a reset-before GRU.")
        out[self.names["b"]] = self._bias(np.concatenate(b))
        if "V" in params and "V" in self.names:
            out[self.names["V"]] = params["V"] if self.convention == "column" else params["V"].T
            out[self.names["V_b"]] = self._bias(params["c"])
        for role, name in self.names.items():  # one array per gate
            if isinstance(name, tuple) and name in out:
                out.update(zip(name, np.split(out.pop(name), len(name), axis=self._gate_axis(role))))
        return out

    def _gate_axis(self, role):
        """The axis along which the gates' blocks of a stacked array follow each other."""
        if role in ("b", "b_hh"):
            return 1 if self.bias_shape == "row" else 0
        return 0 if self.convention == "column" else 1

    def from_user(self, cell_name, user, sizes, *, gradients=False) -> dict:
        """Canonical parameters (or gradients) from this layout's; shapes checked against ``sizes``."""
        gates = self.gates(cell_name)
        G, D, H = len(gates), sizes["D"], sizes["H"]
        user = self._stacked_user(user, sizes)
        U, W = self._weights_from_user(user, gates, D, H)
        b = self._user_bias(user, self.names["b"], G * H)
        b_hh = self._user_bias(user, self.names["b_hh"], G * H) if "b_hh" in self.names else None
        reset_after = resets_after(cell_name)
        out = {}
        for k, g in enumerate(gates):
            rows = slice(k * H, (k + 1) * H)
            out[block_name("U", g)], out[block_name("W", g)] = U[rows].copy(), W[rows].copy()
            bk = b[rows].copy()
            if b_hh is not None and not (g == "n" and reset_after):
                bk = bk if gradients else bk + b_hh[rows]
            if g == "f" and self.forget_bias and not gradients:
                bk = bk + self.forget_bias
            out[block_name("b", g)] = bk
            if g == "n" and reset_after:
                out["b_hn"] = b_hh[rows].copy()
        out = {k: out[k] for k in canonical_names(cell_name, canonical_gate_order(cell_name))}
        if sizes.get("K") and "V" in self.names:
            K = sizes["K"]
            V = as_array(user[self.names["V"]], self.names["V"])
            check_shape(V, (K, H) if self.convention == "column" else (H, K), self.names["V"],
                        f"{self.name} layout readout, K={K}, H={H}")
            out["V"] = V if self.convention == "column" else V.T
            out["c"] = self._user_bias(user, self.names["V_b"], K)
        return out

    def _stacked_user(self, user, sizes):
        """The user's arrays, every one the layout expects present, those given one per gate stacked as
        the layout stacks them."""
        names = [n for role, n in self.names.items() if role not in ("V", "V_b") or sizes.get("K")]
        names = [m for n in names for m in (n if isinstance(n, tuple) else (n,))]
        missing = [n for n in names if n not in user]
        if missing:
            raise ParameterError(f"Layout {self.name!r}: missing {missing}; expected the arrays {names}.")
        user = dict(user)
        for role, name in self.names.items():
            if isinstance(name, tuple):
                parts = [as_array(user[n], n) for n in name]
                try:
                    user[name] = np.concatenate(parts, axis=self._gate_axis(role))
                except ValueError:
                    raise ShapeError(f"Layout {self.name!r}: {', '.join(name)} have the shapes "
                                     f"{[p.shape for p in parts]}; one array per gate of the same shape "
                                     f"expected.") from None
        return user

    def _weights_from_user(self, user, gates, D, H):
        """The stacked input and recurrent weights ``(G*H, D)``, ``(G*H, H)`` in the column convention."""
        def matrix(name, cols):
            expected = (len(gates) * H, cols) if self.convention == "column" else (cols, len(gates) * H)
            a = as_array(user[name], f"{name}")
            check_shape(a, expected, f"{name}", f"{self.name} layout, {self.convention} convention, "
                                                + (f"gates {gates}, " if gates != ("",) else "")
                                                + f"D={D}, H={H}")
            return a if self.convention == "column" else a.T

        if self.stacking == "separate":
            return matrix(self.names["Wx"], D), matrix(self.names["Wh"], H)
        both = matrix(self.names["W"], D + H)
        return (both[:, :D], both[:, D:]) if self.stacking == "xh" else (both[:, H:], both[:, :H])

    def _user_bias(self, user, name, size):
        expected = {"flat": (size,), "row": (1, size), "column": (size, 1)}[self.bias_shape]
        a = as_array(user[name], f"{name}")
        check_shape(a, expected, f"{name}", f"{self.name} layout, {self.bias_shape} bias")
        return a.reshape(size)

    # -- sequences and states ---------------------------------------------------------------
    def sequence_to_user(self, X):
        """(T, N, F) -> the user's sequence layout."""
        if self.vectors == "columns":
            X = X.transpose(0, 2, 1)  # (T, F, N)
            return X.transpose(2, 0, 1) if self.batch_major else X
        return X.transpose(1, 0, 2) if self.batch_major else X

    def sequence_from_user(self, X, what, expected):
        """The user's sequence -> (T, N, F); ``expected`` is (T, N, F)."""
        X = as_array(X, what)
        shape = tuple(np.asarray(self.sequence_to_user(np.empty(expected))).shape)
        check_shape(X, shape, what, f"{self.name} layout: " + ("batch-major" if self.batch_major else "time-major")
                     + f", vectors as {self.vectors}, (T, N, F) = {tuple(expected)}")
        if self.vectors == "columns":
            return X.transpose(1, 2, 0) if self.batch_major else X.transpose(0, 2, 1)
        return X.transpose(1, 0, 2) if self.batch_major else X

    def state_to_user(self, S):
        """(N, H) -> (N, H) or (H, N)."""
        return S.T if self.vectors == "columns" else S

    def state_from_user(self, S, what, expected):
        S = as_array(S, what)
        shape = expected[::-1] if self.vectors == "columns" else expected
        check_shape(S, shape, what, f"{self.name} layout, vectors as {self.vectors}, (N, H) = {tuple(expected)}")
        return S.T if self.vectors == "columns" else S


#: Layouts of the systems users come from (see ``CONVENTIONS.md`` in the project's notes).
LAYOUTS = {
    "pytorch": Layout("pytorch", {"Wx": "weight_ih", "Wh": "weight_hh", "b": "bias_ih", "b_hh": "bias_hh",
                                  "V": "weight", "V_b": "bias"},
                      gate_order=("i", "f", "g", "o"), convention="column"),
    "keras": Layout("keras", {"Wx": "kernel", "Wh": "recurrent_kernel", "b": "bias", "V": "dense_kernel",
                              "V_b": "dense_bias"},
                    gate_order=("i", "f", "g", "o"), convention="row", batch_major=True),
    "cs231n": Layout("cs231n", {"Wx": "Wx", "Wh": "Wh", "b": "b", "V": "W_vocab", "V_b": "b_vocab"},
                     gate_order=("i", "f", "o", "g"), convention="row", batch_major=True),
    "minchar": Layout("minchar", {"Wx": "Wxh", "Wh": "Whh", "b": "bh", "V": "Why", "V_b": "by"},
                      convention="column", bias_shape="column", vectors="columns"),
    "dlfs2": Layout("dlfs2", {"Wx": "Wx", "Wh": "Wh", "b": "b", "V": "W", "V_b": "b_out"},
                    gate_order=("f", "g", "i", "o"), convention="row", batch_major=True),
}

#: Gate orders that differ by cell: a GRU in these layouts.
_GRU_ORDERS = {"pytorch": ("r", "z", "n"), "keras": ("z", "r", "n"), "dlfs2": ("z", "r", "n"),
               "cs231n": ("r", "z", "n"), "minchar": ("r", "z", "n")}


#: other spellings of the presets' names (the README and the projects call min-char-rnn so)
LAYOUT_ALIASES = {"min-char-rnn": "minchar", "min_char_rnn": "minchar", "minchar-rnn": "minchar",
                  "torch": "pytorch", "deep-learning-from-scratch-2": "dlfs2"}


def preset_name(layout):
    """The preset a layout name means (aliases resolved), or the name unchanged."""
    if isinstance(layout, str):
        key = layout.strip().lower()
        return LAYOUT_ALIASES.get(key, key)
    return layout


_BUILTIN_GATES = ("rnn-tanh", "rnn-relu", "rnn-sigmoid", "lstm", "gru", "gru-chung", "gru-reset-before",
                  "gru-reset-before-chung")


def layout_for(layout, cell_name) -> Layout:
    """A preset by name (or a :class:`Layout`), with the gate order of ``cell_name``'s family (a
    built-in cell's name, or a :class:`~symrnn.Cell`: a user's cell keeps its own gates, in its
    order)."""
    if isinstance(layout, Layout):
        return layout
    if not isinstance(layout, str):
        raise UnknownNameError(f"layout must be a preset name or a symrnn.models.layouts.Layout, got "
                               f"{type(layout).__name__}.")
    layout = preset_name(layout)
    if layout not in LAYOUTS:
        raise UnknownNameError(f"Unknown layout {layout!r}; presets: {sorted(LAYOUTS)} (also spelled "
                               f"{sorted(LAYOUT_ALIASES)}), or a symrnn.models.layouts.Layout.")
    preset = LAYOUTS[layout]
    name = cell_name if isinstance(cell_name, str) else cell_name.name
    if not isinstance(cell_name, str) and name not in _BUILTIN_GATES:  # a user's cell: its own gates, in its order
        gates = cell_gates(cell_name)
        return replace(preset, gate_order=() if gates == ("",) else gates)
    if name.startswith("gru"):
        return replace(preset, gate_order=_GRU_ORDERS[layout])
    return preset

