"""Object mode of the automatic search: ``net.forward`` / ``net.backward`` bound methods of one object
whose float arrays are the parameters (see :func:`find_object`)."""
from __future__ import annotations

import functools
import inspect
import itertools
from dataclasses import dataclass, replace

import numpy as np

from ..engine.cells import builtin_cell
from ..errors import SymRNNError, UnknownNameError, UserCodeExit
from ..models.layouts import Layout
from .auto import FAMILIES, GATES, PROBE, ROLE_NAMES, Found, call_forward, describe_layout, reproduces
from .hygiene import guarded
from .signatures import Signature
from .trace import TracingError


# -- an object whose arrays are the parameters (net.forward / net.backward) --------------------------
@dataclass
class ObjectCode:
    """A layer object's forward and backward as the verifier calls functions: the parameters are set
    on the object before each forward (and put back after the verification), the gradients read from
    its ``d<name>`` attributes (or ``grads[name]``) after the backward."""

    obj: object
    forward_method: object
    backward_method: object
    data_roles: tuple  # the forward's arguments: x, h0, c0
    param_roles: tuple  # the layout's roles whose arrays the object holds
    names: dict  # role -> attribute name or tuple of names (one per gate)
    saved: dict

    def forward(self, *args):
        data, params = args[:len(self.data_roles)], args[len(self.data_roles):]
        for role, value in zip(self.param_roles, params):
            name = self.names[role]
            for n, v in zip(name, value) if isinstance(name, tuple) else [(name, value)]:
                setattr(self.obj, n, np.array(v, copy=True))
        return self.forward_method(*data), None

    def backward(self, dh, cache):
        out = self.backward_method(dh)
        data = () if out is None else tuple(out) if isinstance(out, (tuple, list)) else (out,)
        grads = []
        for role in self.param_roles:
            name = self.names[role]
            grads.append(tuple(self._grad(n) for n in name) if isinstance(name, tuple) else self._grad(name))
        return (*data, *grads)

    def _grad(self, name):
        found = getattr(self.obj, "d" + name, None)
        if found is None:
            grads = getattr(self.obj, "grads", None)
            found = grads.get(name) if isinstance(grads, dict) else None
        if found is None:
            from ..errors import UserCodeError
            raise UserCodeError(f"After {type(self.obj).__name__}.backward() there is no gradient of {name}: looked "
                                f"for the attribute d{name} and for grads[{name!r}].")
        return found

    def restore(self):
        for n, v in self.saved.items():
            setattr(self.obj, n, v)


def _object_arrays(obj):
    """The object's float arrays (its parameters), in the order they were set."""
    return {k: v for k, v in vars(obj).items() if isinstance(v, np.ndarray) and v.dtype.kind == "f"
            and v.ndim in (1, 2) and not k.startswith("d") and k != "grads"}


def _object_layouts(arrays):
    """``(D, H, G, names, stackings)`` candidates: the object's arrays read as per-gate matrices over
    ``[h, x]`` (or ``[x, h]``), per-gate input and recurrent matrices, or stacked ones."""
    vectors = {k: v for k, v in arrays.items() if v.ndim == 1 or 1 in v.shape}
    matrices = {k: v for k, v in arrays.items() if k not in vectors}
    groups = {}
    for k, v in matrices.items():
        groups.setdefault(v.shape, []).append(k)
    biases = {}
    for k, v in vectors.items():
        biases.setdefault(v.size, []).append(k)
    out = []
    for (r, c), names in groups.items():
        for H, K in ((r, c), (c, r)):
            for G in (1, 3, 4):
                bias = [b for b in biases.get(H, [])]
                if len(names) == G and len(groups) == 1 and len(bias) == G and K > H:
                    row = (H, K) == (c, r)
                    out.append((K - H, H, G, {"W": tuple(names), "b": tuple(bias)}, ("hx", "xh"), row))
    if len(groups) == 2:  # per-gate input and recurrent matrices: (H, D) and (H, H)
        (s1, n1), (s2, n2) = groups.items()
        for (sx, nx), (sh, nh) in (((s1, n1), (s2, n2)), ((s2, n2), (s1, n1))):
            if sh[0] == sh[1] and len(nx) == len(nh):
                H, G = sh[0], len(nx)
                D = sx[1] if sx[0] == H else sx[0]
                bias = biases.get(H, [])
                names = ({"Wx": nx[0], "Wh": nh[0], "b": bias[0]} if G == 1 and len(bias) == 1 else
                         {"Wx": tuple(nx), "Wh": tuple(nh), "b": tuple(bias)} if len(bias) == G else None)
                if names is not None and G in (1, 3, 4):
                    out.append((D, H, G, names, ("separate",), sx[0] == D))
    return out


def find_object(forward, backward, cell=None):
    """Object mode of :func:`find`: ``forward`` and ``backward`` are bound methods of one object whose
    float arrays are the parameters; returns ``(Found, ObjectCode, D, H)``."""
    obj = getattr(forward, "__self__", None)
    roles = []
    for p in inspect.signature(forward).parameters.values():
        if p.default is p.empty and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            role = {n: r for r in ("x", "h0", "c0") for n in ROLE_NAMES[r]}.get(p.name.lower())
            if role is None:
                raise UnknownNameError(f"Cannot tell the role of {type(obj).__name__}.forward's argument {p.name!r} "
                                       f"(expected the inputs, and optionally h0 and c0).")
            roles.append(role)
    arrays = _object_arrays(obj)
    saved = {k: v.copy() for k, v in arrays.items()}
    candidates = _object_layouts(arrays)
    if not candidates:
        raise UnknownNameError(f"{type(obj).__name__}'s arrays {[(k, v.shape) for k, v in arrays.items()]} are not "
                               f"the weights of a gated cell symrnn can read (one matrix per gate over [h, x], or "
                               f"input and recurrent matrices per gate, with a bias per gate): declare the cell and "
                               f"a Layout, and call verify_layer with functions.")
    try:
        for D, H, G, names, stackings, row in candidates:
            param_roles = tuple(r for r in ("Wx", "Wh", "W", "b") if r in names)
            code = ObjectCode(obj, forward, backward, tuple(roles), param_roles, names, saved)
            sig_roles = tuple(roles) + param_roles
            for stacking, vectors, batch_major, bias_shape in itertools.product(
                    stackings, ("columns", "rows"), (False, True), ("column", "flat", "row")):
                layout = Layout("object", names, convention="row" if row else "column", stacking=stacking,
                                bias_shape=bias_shape, vectors=vectors, batch_major=batch_major)
                for family in FAMILIES:
                    gates = GATES["rnn" if family[0].startswith("rnn") else family[0].split("-")[0]]
                    if len(gates) != G:
                        continue
                    for name in family if cell is None else [n for n in family if n == cell]:
                        model = _sized_model(name, D, H)
                        for order in (itertools.permutations(gates) if G > 1 else [()]):
                            candidate = replace(layout, gate_order=tuple(order))
                            if not _shapes_fit(candidate, name, model, arrays):
                                break
                            for N in (PROBE["N"], 1):  # a batch when the code takes one
                                if reproduces(code.forward, sig_roles, candidate, model, name, N):
                                    text = (f"{type(obj).__name__}'s arrays are the weights of the built-in cell "
                                            f"{name!r}; layout: {describe_layout(candidate, name)}"
                                            + ("; one example at a time (the forward takes no batch: N = 1)"
                                               if N == 1 else ""))
                                    returned = _data_gradients(code, sig_roles, candidate, model, name, N)
                                    sig = Signature(sig_roles, ("h", "cache"), ("dh", "cache"),
                                                    ("dx", "dh0", "dc0")[:returned] + param_roles)
                                    return Found(name, candidate, sig, "built-in", text, N), code, D, H
    finally:
        code.restore()
    raise TracingError(f"{type(obj).__name__}.forward computes no built-in cell with its arrays read in any layout "
                       f"tried: declare the cell (symrnn.Cell) and a Layout, and verify with functions.")


def _data_gradients(code, roles, layout, model, cell, N):
    """How many of (dx, dh0, dc0) the object's backward() returns (run once on the probe, on a batch
    of ``N`` or, when its backward takes no batch, on one example)."""
    for n in dict.fromkeys((N, 1)):
        rng = np.random.default_rng(1)
        params = model.init_params(1)
        x = rng.normal(size=(PROBE["T"], n, model.sizes["D"]))
        h0 = {s: np.zeros((n, model.sizes["H"])) for s in model.state_names}
        try:
            call_forward(code.forward, roles, layout, cell, params, x, h0, ())
            with np.errstate(all="ignore"), guarded("the backward"):
                out = code.backward_method(layout.sequence_to_user(rng.normal(size=(PROBE["T"], n,
                                                                                     model.sizes["H"]))))
        except UserCodeExit:
            raise
        except (Exception, SymRNNError):
            continue
        return 0 if out is None else len(out) if isinstance(out, (tuple, list)) else 1
    return 1


@functools.lru_cache(maxsize=None)
def _sized_model(name, D, H):
    from ..models.model import Model

    return Model(builtin_cell(name), D=D, H=H, loss="upstream")


def _shapes_fit(layout, name, model, arrays):
    try:
        user = layout.to_user(name, model.init_params(0))
    except SymRNNError:
        return False
    return all(n in arrays and arrays[n].shape == v.shape for n, v in user.items())
