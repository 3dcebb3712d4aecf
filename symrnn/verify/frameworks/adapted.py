"""What the PyTorch and JAX adapters share: a framework's code presented as a NumPy layer, verified
by :func:`symrnn.verify.verify_layer` under PyTorch's conventions, its findings added after."""
from __future__ import annotations

import inspect
from dataclasses import dataclass, field, replace

from ...errors import SymRNNError, UnknownNameError
from ...models.layouts import layout_for
from ..auto import ROLE_NAMES
from ..trace import TracingError
from ..signatures import Signature

#: roles of PyTorch's names (a module's weight_ih_l0 ... read without the layer suffix)
_BY_NAME = {n: role for role, names in ROLE_NAMES.items() for n in names}
_GRADIENT_OF = {"x": "dx", "h0": "dh0", "c0": "dc0"}


def _key(name: str) -> str:
    """``name`` as :data:`~symrnn.verify.auto.ROLE_NAMES` spells it: lower case, without a module's
    layer suffix (``weight_ih_l0`` is ``weight_ih``)."""
    return name.lower().removesuffix("_l0")


def role_of(name: str) -> str | None:
    """The role of an argument or parameter named ``name`` (``weight_ih_l0`` is ``Wx``), or None."""
    return _BY_NAME.get(_key(name))


@dataclass
class FrameworkCode:
    """A framework's forward and backward as NumPy functions of the roles' arrays.

    ``forward(*arrays)`` takes the arrays of ``roles`` in order (its ``__signature__`` names them as
    the user did) and returns ``(h, cache)``; ``backward(dh, cache)`` the gradients of the same
    arguments, in order."""

    forward: object
    backward: object
    roles: tuple
    names: dict  # role -> the user's name
    describe: str  # "torch.autograd.Function LSTMFunction, float32 on cpu", for the report
    dtype: str = "float64"
    batch_first: bool | None = None
    findings: list = field(default_factory=list)  # hygiene the framework shows (saved tensors modified)
    restore: object = None  # puts a module's weights back
    python: str = ""  # how the verification is called again in Python, for the replay line


def named(fn, names, label):
    """``fn`` with a signature of positional arguments ``names`` (what :mod:`symrnn.verify.auto` reads)."""
    fn.__signature__ = inspect.Signature([inspect.Parameter(_key(n), inspect.Parameter.POSITIONAL_OR_KEYWORD)
                                          for n in names])
    fn.__name__ = label
    return fn


def data_and_weights(arg_names, what):
    """The roles of a forward's arguments; every one must have a role (x, h0, c0, weights)."""
    roles, unknown = [], []
    for n in arg_names:
        r = role_of(n)
        (roles if r else unknown).append(r or n)
    if unknown or "x" not in roles or len(set(roles)) != len(roles):
        raise UnknownNameError(
            f"Cannot tell the roles of {what}'s arguments {list(arg_names)}"
            + (f" ({unknown} are not names symrnn knows)" if unknown else "")
            + ": name them x, h0, c0 and PyTorch's weight_ih, weight_hh, bias_ih, bias_hh (or Wx, Wh, b).")
    return tuple(roles)


def framework_layout(code, layout, batch_first, cell):
    """PyTorch's layout (or ``layout``) under the user's names, batch-first or not."""
    base = layout_for("pytorch" if layout is None else layout, "rnn-tanh" if cell is None else cell)
    names = {r: n for r, n in code.names.items() if r not in ("x", "h0", "c0")}
    return replace(base, names=names, batch_major=bool(batch_first))


def signature_of(roles):
    return Signature(roles, ("h", "cache"), ("dh", "cache"), tuple(_GRADIENT_OF.get(r, r) for r in roles))


def _batch_first(code, layout, batch_first, cell):
    """The batch-first flag: declared, the module's, else the one in which the forward reproduces a
    built-in cell (time-major when neither does)."""
    for given in (batch_first, code.batch_first):
        if given is not None:
            return bool(given)
    if cell is not None and not isinstance(cell, str):
        return False
    from ..auto import find

    for candidate in (False, True):
        try:
            find(code.forward, cell=cell, layout=framework_layout(code, layout, candidate, cell))
            return candidate
        except SymRNNError:
            continue
    return False


def verify_adapted(code, cell, layout, batch_first, options):
    """Verify ``code`` (a :class:`FrameworkCode`) as a layer; the framework's findings join the
    report's hygiene (a saved tensor modified in place makes the verdict wrong)."""
    from .. import verify_layer

    try:
        first = _batch_first(code, layout, batch_first, cell)
        L = framework_layout(code, layout, first, cell)
        if cell is None:
            try:
                result = verify_layer(code.forward, code.backward, None, L, **options)
            except TracingError:
                raise TracingError(
                    f"The forward of {code.describe} computes no built-in cell in PyTorch's layout "
                    f"({'batch-first' if first else 'time-major'}), and framework code is not traced (no torch "
                    f"graph capture or jaxpr yet): declare the cell, cell=symrnn.Cell(...) (--cell "
                    f"file.py:function), and pass layout= or batch_first= if the layout differs.") from None
        else:
            result = verify_layer(code.forward, code.backward, cell, L, signature=signature_of(code.roles),
                                  **options)
    finally:
        if code.restore is not None:
            code.restore()
    result.found = "; ".join(p for p in (code.describe + (", batch-first" if first else ", time-major"),
                                         result.found) if p)
    seen = {f.message for f in result.hygiene}
    for f in code.findings:
        if f.message not in seen:
            seen.add(f.message)
            result.hygiene.append(f)
            if f.severity == "error":
                result.ok = False
    if result.minimal and code.python:
        result.minimal["command"] = code.python.format(path=result.minimal["path"])
    return result
