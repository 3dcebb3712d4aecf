"""Weights for decay studies: an initialisation scheme and a scale, or a user's trained weights.

Schemes (``init``), applied to every parameter of the cell:

* ``pytorch``: every parameter uniform in ``[-1/sqrt(H), 1/sqrt(H)]`` (``nn.RNN/LSTM/GRU`` defaults);
* ``xavier``: matrices uniform in ``[-a, a]``, ``a = sqrt(6 / (fan_in + fan_out))`` (Glorot and
  Bengio 2010), biases zero;
* ``orthogonal``: recurrent matrices random orthogonal (QR of a Gaussian, signs fixed), input
  matrices Xavier, biases zero;
* ``identity``: recurrent matrices the identity, input matrices Gaussian with standard deviation
  0.001, biases zero (the IRNN of Le, Jaitly and Hinton 2015 with a relu cell);
* ``normal``: recurrent matrices ``N(0, 1) / sqrt(H)`` (the random networks of the circular law),
  input matrices ``N(0, 1) / sqrt(D)``, biases zero;
* ``paper``: the cell's own paper's initialisation where it has one (:data:`PAPER_INITS`), the
  ``pytorch`` draw for every other parameter.  LRU (Orvieto et al. 2023): ``lambda`` uniform on the
  ring ``LRU_RING`` of the complex plane (``|lambda|^2`` uniform between the radii squared, phase
  uniform in ``[0, LRU_MAX_PHASE]``; the cell normalises its input by ``gamma = sqrt(1 - |lambda|^2)``
  itself), ``B`` ``N(0, 1/(2D))``, ``C`` ``N(0, 1/H)``.  S6 (Gu and Dao 2023): ``A_log = log(1..N)`` in
  every channel (S4D-real, ``A = -(1..N)``) and the step's bias ``b_dt`` the inverse softplus of a
  ``Delta`` log-uniform in ``S6_DT``.

Recurrent matrices are the ``(H, H)`` parameters that multiply a previous state.  ``scale_by`` says
what the scale sets, for each recurrent matrix: ``gain`` multiplies the scheme's draw by ``scale`` (PyTorch's ``gain``);
``radius`` rescales it to spectral radius ``scale``; ``sigma`` rescales it to largest singular
value ``scale``.  Input matrices and biases keep the scheme's values.
"""
from __future__ import annotations

import re
import warnings
from pathlib import Path

import numpy as np
import sympy as sp

from ..errors import ParameterError, UnknownNameError

INITS = ("pytorch", "xavier", "orthogonal", "identity", "normal", "paper")
#: the LRU's ring of ``|lambda|`` and largest phase under ``init="paper"``
LRU_RING, LRU_MAX_PHASE = (0.9, 0.999), 2 * np.pi
#: the range of S6's step ``Delta = softplus(b_dt)`` under ``init="paper"`` (log-uniform)
S6_DT = (1e-3, 1e-1)
SCALE_BY = ("gain", "radius", "sigma")


def check_scale(scale, what="scale"):
    if isinstance(scale, bool) or not isinstance(scale, (int, float, np.integer, np.floating)) \
            or not np.isfinite(scale) or scale < 0:
        raise ParameterError(f"{what} must be a finite number >= 0, got {scale!r}.")
    return float(scale)


def check_init(init, scale_by="gain"):
    if init not in INITS:
        raise UnknownNameError(f"Unknown initialisation scheme {init!r}; expected one of {INITS}.")
    if scale_by not in SCALE_BY:
        raise UnknownNameError(f"Unknown scale_by={scale_by!r}; expected one of {SCALE_BY} "
                               f"(multiply the draw, set the spectral radius, set the largest singular value).")


def recurrent_names(model) -> list:
    """The ``(H, H)`` parameters that multiply a previous state (directly, or through lets made of it)
    and the diagonal recurrent weights (:func:`diagonal_names`): the ones a scale applies to. An
    ``(H, H)`` matrix of the input's path (S6's ``W_dt``, which maps the channels to the step sizes) is
    not recurrent."""
    from ..engine.symbols import MatVec

    recurrent, reads_past = set(), set()
    for equation in model.cell.equations:
        symbols = equation.rhs.free_symbols
        if symbols & reads_past or any(str(s).endswith("[t-1]") for s in symbols):
            reads_past.add(equation.target)
        for product in equation.rhs.atoms(MatVec):
            vector = product.args[1].free_symbols
            if vector & reads_past or any(str(s).endswith("[t-1]") for s in vector):
                recurrent.add(str(product.args[0]))
    return [n for n, spec in model.cell.params.items() if spec.shape == ("H", "H") and n in recurrent] \
        + diagonal_names(model)


def diagonal_names(model) -> list:
    """The vector parameters that multiply a previous state entry by entry (IndRNN's ``w``, SRU's
    ``v_f``): a diagonal recurrent matrix, kept as a vector."""
    out = []
    for name, spec in model.cell.params.items():
        if len(spec.shape) != 1:
            continue
        for equation in model.cell.equations:
            for term in equation.rhs.atoms(sp.Mul):
                if spec.symbol in term.args and any(str(s).endswith("[t-1]") for s in term.free_symbols):
                    out.append(name)
                    break
            if out and out[-1] == name:
                break
    return out


def _diagonal(rng, init, shape):
    """The diagonal of a recurrent matrix drawn by ``init``: identity ones, orthogonal random signs,
    normal ``N(0, 1)``, xavier ``U(-1, 1)`` (fan-in 1)."""
    if init == "identity":
        return np.ones(shape)
    if init == "orthogonal":
        return rng.choice([-1.0, 1.0], size=shape)
    return rng.standard_normal(shape) if init == "normal" else rng.uniform(-1.0, 1.0, shape)


def _orthogonal(rng, n):
    q, r = np.linalg.qr(rng.standard_normal((n, n)))
    return q * np.sign(np.diagonal(r))


def make_params(model, init="pytorch", scale=1.0, scale_by="gain", seed=0, forget_bias=None) -> dict:
    """Parameters of ``model``'s cell drawn by ``init``, recurrent matrices scaled.

    Parameters
    ----------
    model : Model
        Only its cell and sizes are used.
    init : str
        ``pytorch`` (uniform ``1/sqrt(H)``), ``xavier``, ``orthogonal``, ``identity`` (IRNN:
        recurrent ``I``, inputs ``N(0, 0.001^2)``, biases 0), ``normal`` (``N(0, 1)/sqrt(H)``) or
        ``paper`` (the LRU's ring and S6's S4D-real ``A`` and ``Delta`` range; see the module's text).
    scale : float
        Applied to the recurrent ``(H, H)`` matrices and the diagonal recurrent weights (a vector that
        multiplies a previous state, as IndRNN's ``w``) only; a cell with neither gets a
        ``RuntimeWarning`` (the scale changes nothing there).
    scale_by : str
        ``gain`` multiplies the draw, ``radius`` sets the spectral radius, ``sigma`` the largest
        singular value.
    seed : int
    forget_bias : float, optional
        Set every entry of the forget gate's bias ``b_f`` to this value (Keras' ``unit_forget_bias``
        is 1; Jozefowicz et al. 2015): an LSTM's cell path then keeps about ``sigmoid(b_f)`` per step
        instead of 1/2.  Only for cells with a ``b_f``.

    Returns
    -------
    dict of str to ndarray

    Examples
    --------
    >>> import numpy as np, symrnn as sr
    >>> from symrnn.decay import make_params
    >>> model = sr.Model("rnn-tanh", D=2, H=6, loss="upstream")
    >>> W = make_params(model, init="orthogonal", scale=1.5, scale_by="sigma")["W"]
    >>> round(float(np.linalg.norm(W, 2)), 12)
    1.5
    """
    check_init(init, scale_by)
    scale = check_scale(scale)
    rng = np.random.default_rng([seed, 3])
    recurrent = set(recurrent_names(model))
    params = {}
    diagonal = set(diagonal_names(model))
    if not recurrent and scale != 1:
        warnings.warn(f"scale={scale} has no effect on the cell {model.cell.name!r}: it has no recurrent weights "
                      f"(no (H, H) matrix and no vector that multiplies a previous state); its recurrence is "
                      f"set by its gates and inputs.", RuntimeWarning, stacklevel=2)
    for name, shape in model.param_shapes.items():
        if init in ("pytorch", "paper"):
            bound = 1.0 / np.sqrt(model.sizes["H"])
            params[name] = rng.uniform(-bound, bound, shape)
        elif name in diagonal:  # a diagonal recurrent matrix: the init's diagonal
            params[name] = _diagonal(rng, init, shape)
        elif len(shape) == 1:
            params[name] = np.zeros(shape)
        elif name in recurrent and init == "orthogonal":
            params[name] = _orthogonal(rng, shape[0])
        elif name in recurrent and init == "identity":
            params[name] = np.eye(shape[0])
        elif name in recurrent and init == "normal":
            params[name] = rng.standard_normal(shape) / np.sqrt(shape[1])
        elif init == "identity":
            params[name] = 0.001 * rng.standard_normal(shape)
        elif init == "normal":
            params[name] = rng.standard_normal(shape) / np.sqrt(shape[1])
        else:  # xavier, and the input matrices of orthogonal
            a = np.sqrt(6.0 / (shape[0] + shape[1]))
            params[name] = rng.uniform(-a, a, shape)
    if init == "paper":
        _paper(model, params, rng)
    for name in recurrent:
        params[name] = rescale(params[name], scale, scale_by, name)
    if forget_bias is not None:
        check_forget_bias(model, forget_bias)
        params["b_f"] = np.full(model.param_shapes["b_f"], float(forget_bias))
    return params


def _lru_paper(model, params, rng):
    shapes, (r_min, r_max) = model.param_shapes, LRU_RING
    u1, u2 = rng.uniform(0.0, 1.0, shapes["nu"]), rng.uniform(0.0, 1.0, shapes["theta"])
    params["nu"] = np.log(-0.5 * np.log(u1 * (r_max ** 2 - r_min ** 2) + r_min ** 2))  # |lambda| = exp(-exp(nu))
    params["theta"] = np.log(LRU_MAX_PHASE * u2)  # arg(lambda) = exp(theta)
    for name in ("B_re", "B_im"):
        params[name] = rng.standard_normal(shapes[name]) / np.sqrt(2 * model.sizes["D"])
    for name in ("C_re", "C_im"):
        params[name] = rng.standard_normal(shapes[name]) / np.sqrt(model.sizes["H"])


def _s6_paper(model, params, rng):
    N = model.sizes["SN"]
    params["A_log"] = np.tile(np.log(np.arange(1, N + 1, dtype=np.float64)), model.sizes["H"])  # channel-major
    lo, hi = np.log(S6_DT[0]), np.log(S6_DT[1])
    dt = np.exp(rng.uniform(lo, hi, model.param_shapes["b_dt"]))
    params["b_dt"] = dt + np.log(-np.expm1(-dt))  # softplus(b_dt) = dt


#: the cells with a paper initialisation: ``{cell name: (its parameters, the function that sets them)}``
PAPER_INITS = {"lru": (("nu", "theta", "B_re", "B_im", "C_re", "C_im"), _lru_paper),
               "s6": (("A_log", "b_dt"), _s6_paper)}


def _paper(model, params, rng):
    """``init="paper"``: the cell's paper initialisation over the ``pytorch`` draw (a warning when it has none)."""
    entry = PAPER_INITS.get(model.cell.name)
    if entry is None or not set(entry[0]) <= set(model.param_shapes):
        warnings.warn(f"init='paper': the cell {model.cell.name!r} has no paper initialisation here (only "
                      f"{sorted(PAPER_INITS)}); its parameters are PyTorch's default draw.", RuntimeWarning,
                      stacklevel=3)
        return
    entry[1](model, params, rng)


def check_forget_bias(model, forget_bias):
    if isinstance(forget_bias, bool) or not isinstance(forget_bias, (int, float, np.integer, np.floating)) \
            or not np.isfinite(forget_bias):
        raise ParameterError(f"forget_bias must be a finite number, got {forget_bias!r}.")
    if model.param_shapes.get("b_f") is None or len(model.param_shapes["b_f"]) != 1:
        raise ParameterError(f"forget_bias={forget_bias!r}: the cell {model.cell.name!r} has no forget-gate bias "
                             f"b_f (it is an LSTM's); leave it out for this cell.")


def rescale(W, scale, scale_by="gain", name="W"):
    """``W`` times ``scale`` (gain), or rescaled to spectral radius / largest singular value ``scale``."""
    scale = check_scale(scale)
    if scale_by == "gain":
        return W * scale
    if W.ndim == 1:  # a diagonal matrix kept as a vector: its radius and its norm are its largest |entry|
        size = np.max(np.abs(W), initial=0.0)
    else:
        size = np.max(np.abs(np.linalg.eigvals(W))) if scale_by == "radius" else np.linalg.norm(W, 2)
    if size == 0:
        if scale == 0:
            return W.copy()
        raise ParameterError(f"{name} has {'spectral radius' if scale_by == 'radius' else 'norm'} 0 and cannot be "
                             f"rescaled to {scale}; use scale_by='gain' or another init.")
    return W * (scale / size)


def load_params(model, source, layout="pytorch") -> dict:
    """A user's trained weights as canonical parameters.

    Parameters
    ----------
    model : Model
        The model whose cell the weights belong to.
    source : dict, str or path
        See below.
    layout : str
        ``pytorch``, ``keras`` or ``symrnn``.

    Returns
    -------
    dict of str to ndarray
        symrnn's parameter names (``U_i``, ``W_f``, ...).

    Notes
    -----

    ``source``: a dict of canonical arrays (``layout="symrnn"``), a PyTorch ``state_dict``
    (``layout="pytorch"``: ``weight_ih_l0`` ...), Keras weights (``layout="keras"``: a dict with
    ``kernel``, ``recurrent_kernel``, ``bias`` or ``layer.get_weights()``), or a path to a
    ``.npz`` (read with the same layout) or a ``.pt``/``.pth`` state dict (needs torch).
    """
    from ..models import layouts

    if isinstance(source, (str, Path)):
        source = read_weights(source)
    if not isinstance(source, dict) and not (layout == "keras" and isinstance(source, (list, tuple))):
        raise ParameterError(f"The weights are a {type(source).__name__}; give a dict of arrays (a state dict), "
                             f"Keras weights, or the path of a .npz/.pt/.pth file.")
    cell = model.cell.name
    if layout == "pytorch":
        prefix = ""
        deeper = sorted(k for k in source if isinstance(k, str) and re.search(r"_l[1-9]\d*(_reverse)?$", k)
                        or isinstance(k, str) and k.endswith("_reverse"))
        if deeper:
            raise ParameterError(
                f"The weights hold more than one layer or direction ({', '.join(deeper[:4])}"
                f"{', ...' if len(deeper) > 4 else ''}); the decay study runs one cell. Keep layer 0's forward "
                f"direction (the keys ending in _l0), or study a StackedModel from the Python API.")
        keys = [k for k in source if isinstance(k, str) and k.endswith("weight_ih_l0")]
        if keys and keys[0] != "weight_ih_l0":
            prefix = keys[0][:-len("weight_ih_l0")]
        params = layouts.from_torch(cell, source, prefix=prefix)
    elif layout == "keras":
        params = layouts.from_keras(cell, source)
    elif layout == "symrnn":
        params = {k: np.asarray(v, dtype=np.float64) for k, v in source.items()}
    else:
        raise UnknownNameError(f"Unknown weights layout {layout!r}; expected 'pytorch', 'keras' or 'symrnn'.")
    params = {k: np.asarray(v, dtype=np.float64) for k, v in params.items()}
    expected = model.param_shapes
    for k, shape in expected.items():
        if k not in params:
            raise ParameterError(f"The weights have no {k!r}; the cell {cell!r} needs {sorted(expected)}.")
        if params[k].shape != shape:
            raise ParameterError(f"Weight {k!r} has shape {params[k].shape}; the model (H={model.sizes['H']}, "
                                 f"D={model.sizes['D']}) expects {shape}: build the model with the weights' sizes.")
    return {k: params[k] for k in expected}


def read_weights(path) -> dict:
    """The arrays of a ``.npz`` (read without pickles) or a ``.pt``/``.pth`` state dict; a file that is not
    one gives a :class:`ParameterError` saying what it is expected to be."""
    path = Path(path)
    if not path.is_file():
        raise ParameterError(f"No weights file {str(path)!r}.")
    if path.suffix in (".pt", ".pth"):
        import torch

        try:
            source = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # a pickle torch refuses, a truncated or foreign file
            raise ParameterError(f"Cannot read the weights file {str(path)!r} with torch.load(weights_only=True) "
                                 f"({type(exc).__name__}); save a state dict with torch.save(model.state_dict(), "
                                 f"path).") from None
        source = source.state_dict() if hasattr(source, "state_dict") else source
        if not isinstance(source, dict):
            raise ParameterError(f"The weights file {str(path)!r} holds a {type(source).__name__}, not a state dict; "
                                 f"save one with torch.save(model.state_dict(), path).")
        return source
    if path.suffix == ".npz":
        try:
            with np.load(path, allow_pickle=False) as f:
                return {k: f[k] for k in f.files}
        except Exception as exc:  # not a zip, a pickled object array, a truncated file
            raise ParameterError(f"Cannot read the weights file {str(path)!r} as an .npz of plain arrays "
                                 f"({type(exc).__name__}); write one with np.savez(path, name=array, ...).") from None
    raise ParameterError(f"Weights file {str(path)!r}: expected .npz, .pt or .pth.")


def sizes_of(cell, source, layout="pytorch"):
    """``(D, H)`` read from a PyTorch state dict or Keras weights (for building the model)."""
    if layout == "pytorch":
        found = {}
        for name in ("weight_ih_l0", "weight_hh_l0"):
            found[name] = next((v for k, v in source.items() if str(k).endswith(name)), None)
            if found[name] is None or np.ndim(found[name]) != 2:
                raise ParameterError(
                    f"The weights have no 2-D {name!r} (keys: {', '.join(map(str, list(source)[:8]))}"
                    f"{', ...' if len(source) > 8 else ''}); a PyTorch state dict of nn.RNN/LSTM/GRU has "
                    f"weight_ih_l0, weight_hh_l0, bias_ih_l0, bias_hh_l0. For other names use --layout keras or "
                    f"symrnn.")
        return int(np.shape(found["weight_ih_l0"])[1]), int(np.shape(found["weight_hh_l0"])[1])
    if layout == "keras":
        try:
            kernel, recurrent = (source[0], source[1]) if isinstance(source, (list, tuple)) else (
                source["kernel"], source["recurrent_kernel"])
            return int(np.shape(kernel)[0]), int(np.shape(recurrent)[0])
        except (KeyError, IndexError):
            raise ParameterError(f"The Keras weights need 'kernel' and 'recurrent_kernel' (or the list "
                                 f"layer.get_weights()); got {', '.join(map(str, list(source)[:8]))}.") from None
    raise UnknownNameError(f"Cannot read sizes from layout {layout!r}.")
