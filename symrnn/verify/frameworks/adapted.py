"""What the PyTorch and JAX adapters share: a framework's code presented as a NumPy layer, verified
by :func:`symrnn.verify.verify_layer` under PyTorch's conventions, its findings added after."""
from __future__ import annotations

import inspect
from dataclasses import dataclass, field

import numpy as np

from ...errors import UnknownNameError
from ..auto import ROLE_NAMES
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
    symbolic: object = None  # arrays of Traced -> every output of one step as object arrays (graph capture)
    finals: dict = field(default_factory=dict)  # "returned": the final states the last forward returned
    # (h_n, c_n); "ignored": those whose incoming gradient the backward ignored; "checked"


def final_outputs(outputs, h):
    """``{"h": k, "c": k}``: which of ``outputs`` (what the code returned after the states of every step,
    as NumPy arrays) are the final states: ``h_n`` holds the states of the last step (time-major or
    batch-first, any shape of that size), ``c_n`` is the one other output of ``h_n``'s size."""
    h = np.asarray(h)
    lasts = [h[-1]] + ([h[:, -1]] if h.ndim > 2 else [])
    found = {}
    for k, a in enumerate(outputs):
        a = np.asarray(a)
        if any(a.size == last.size and np.array_equal(a.reshape(-1), last.reshape(-1)) for last in lasts):
            found["h"] = k
            break
    if "h" in found:
        size = np.asarray(outputs[found["h"]]).size
        others = [k for k, a in enumerate(outputs) if k != found["h"] and np.asarray(a).size == size]
        if len(others) == 1:
            found["c"] = others[0]
    return found


def ignores(grads):
    """The gradients a backward returned for one final state's incoming gradient alone are all zero:
    it ignored that gradient."""
    return all(g is None or not np.any(np.asarray(g, dtype=float)) for g in grads)


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


def signature_of(roles, finals=()):
    """The calling convention of a framework's code; ``finals`` the final states it returns (``h``,
    ``c``): the gradients arriving at them are passed too (``dh_n``, ``dc_n``)."""
    seeded = tuple(f"d{s}_n" for s in ("h", "c") if s in finals)
    return Signature(roles, ("h", "cache"), ("dh",) + seeded + ("cache",), tuple(_GRADIENT_OF.get(r, r) for r in roles))


def _returned_finals(code, found):
    """The final states the code returns (h_n, c_n), from its last forward (run once here when the cell
    was declared and nothing ran it yet)."""
    if "returned" not in code.finals and found.cell is not None:
        from ...engine.cells import builtin_cell
        from ...models.model import Model
        from ..auto import PROBE, reproduces

        cell = builtin_cell(found.cell) if isinstance(found.cell, str) else found.cell
        try:
            model = Model(cell, D=PROBE["D"], H=PROBE["H"], loss="upstream")
            reproduces(code.forward, code.roles, found.layout, model, found.cell)
        except Exception:  # noqa: BLE001 - the verification itself reports what fails
            pass
    return tuple(code.finals.get("returned", ()))


def _check_states(code, cell):
    """The code's initial states are states of the cell (a GRU has no ``c0``)."""
    from ...engine.cells import builtin_cell

    if cell is None:
        return
    states = (builtin_cell(cell) if isinstance(cell, str) else cell).state_names
    extra = [r for r in code.roles if r in ("h0", "c0") and r[0] not in states]
    if extra:
        name = cell if isinstance(cell, str) else getattr(cell, "name", "the cell")
        raise UnknownNameError(f"{code.describe} takes {extra[0]} ({code.names[extra[0]]}), but {name!r} has no "
                               f"state {extra[0][0]} (its states: {list(states)}): declare the cell the code "
                               f"computes, or drop that argument.")


def _final_fingerprint(code, result):
    """The mistake named when the backward ignored the gradient arriving at a final state it returns."""
    from ..mutants import Mutation

    ignored = [s for s in ("h", "c") if s in code.finals.get("ignored", ())]
    if ignored and not result.ok and result.fingerprint is None and result.forward.ok:
        names = " and ".join(f"{s}_n" for s in ignored)
        result.fingerprint = Mutation(
            "final-state-gradient-ignored", f"the gradient arriving at {names} is ignored: the backward must add "
            f"it to the message into the last step (a loss of {names}, as a many-to-one classifier's, gets no "
            f"gradient)", where=names, changes=" and ".join(f"dL/d{s}_T" for s in ignored))


def _head_fingerprint(code, found, result, D, H):
    """A reduction over the wrong axis of the heads, named when the wrong gradients show it."""
    from ...engine.cells import builtin_cell
    from ...models.model import Model
    from .heads import reduction_fingerprint

    wrong = {g.name for g in result.gradients if not g.ok}
    model = Model(builtin_cell(found.cell) if isinstance(found.cell, str) else found.cell, D=D, H=H, loss="upstream")
    mistake = reduction_fingerprint(code, found.layout, model, wrong)
    if mistake is not None:
        result.fingerprint = mistake
        result.localisation["gradient"] = f"d{mistake.where}"


def verify_adapted(code, cell, layout, batch_first, options, heads=1):
    """Verify ``code`` (a :class:`FrameworkCode`) as a layer; the framework's findings join the
    report's hygiene (a saved tensor modified in place makes the verdict wrong)."""
    from .. import verify_layer
    from .cells import resolve

    options = dict(options)
    command = options.pop("replay_command", None)  # the command line's (the CLI's), else the Python call
    try:
        found = resolve(code, cell, layout, batch_first, heads)
        _check_states(code, found.cell)
        signature = options.pop("signature", None) or signature_of(code.roles, _returned_finals(code, found))
        if found.cell is None:  # a built-in RNN, LSTM or GRU: verify_layer finds which, in found.layout
            result = verify_layer(code.forward, code.backward, None, found.layout, signature=signature, **options)
        else:
            result = verify_layer(code.forward, code.backward, found.cell, found.layout, signature=signature,
                                  **options)
            result.found = found.text or result.found
        _final_fingerprint(code, result)
        if heads > 1 and not result.ok and result.fingerprint is None:
            _head_fingerprint(code, found, result, options.get("D", 3), options.get("H", 4))
    finally:
        if code.restore is not None:
            code.restore()
    first = found.batch_first
    result.found = "; ".join(p for p in (code.describe + (", batch-first" if first else ", time-major"),
                                         result.found) if p)
    seen = {f.message for f in result.hygiene}
    for f in code.findings:
        if f.message not in seen:
            seen.add(f.message)
            result.hygiene.append(f)
            if f.severity == "error":
                result.ok = False
    if result.minimal and (command is not None or code.python):
        path = result.minimal["path"]
        result.minimal["command"] = command(path) if command is not None else code.python.format(path=path)
    return result
