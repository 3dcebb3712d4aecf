"""One step of a PyTorch forward captured by ``torch.export`` and run on symbols.

The forward is exported at the shapes of one step (``T = N = 1``) and decomposed to the Core ATen
operator set (``ExportedProgram.run_decompositions()``), a documented and finite set of operators;
each node of the graph is then evaluated on NumPy object arrays of
:class:`~symrnn.verify.trace.Traced` scalars, so that the outputs are SymPy expressions of the
inputs, the previous states and the weights (read back as a cell by
:mod:`~symrnn.verify.frameworks.traced`).

``torch.export`` is chosen over ``torch.fx.symbolic_trace`` (which cannot follow a Python loop
over ``x.shape[0]`` nor trace into an ``autograd.Function``) and over ``make_fx`` (under
``torch.fx.experimental``): it is PyTorch's supported whole-graph capture, it traces through
``autograd.Function.forward`` and modules, and its Core ATen output is what its documentation
promises to keep stable.
"""
from __future__ import annotations

import contextlib
import logging
import operator
import warnings

import numpy as np
import torch

from ...engine import functions as F
from ..trace import TracingError
from .symbolic_ops import COMMON, clamp, filled, map_entries, maximum, minimum, pair


#: loggers through which torch.export reports the failures of a capture symrnn expects to fail and handles
QUIET_LOGGERS = ("torch._subclasses.fake_tensor", "torch.export", "torch._export", "torch.fx.experimental")


@contextlib.contextmanager
def _quiet_torch_logs():
    loggers = [logging.getLogger(name) for name in QUIET_LOGGERS]
    levels = [log.level for log in loggers]
    for log in loggers:
        log.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        for log, level in zip(loggers, levels):
            log.setLevel(level)


def _slice(a, dim=0, start=None, end=None, step=1):
    index = [slice(None)] * a.ndim
    index[dim] = slice(start, end if end is None or end < 2 ** 62 else None, step)
    return a[tuple(index)]


def _slice_scatter(a, src, dim=0, start=None, end=None, step=1):
    out = np.array(a, dtype=object, copy=True)
    index = [slice(None)] * a.ndim
    index[dim] = slice(start, end if end is None or end < 2 ** 62 else None, step)
    out[tuple(index)] = src
    return out


def _select_scatter(a, src, dim, index):
    out = np.array(a, dtype=object, copy=True)
    where = [slice(None)] * a.ndim
    where[dim] = index
    out[tuple(where)] = src
    return out


def _split(a, sizes, dim=0):
    if isinstance(sizes, int):
        sizes = [sizes] * -(-a.shape[dim] // sizes)
        sizes[-1] = a.shape[dim] - sum(sizes[:-1])
    return np.split(a, np.cumsum(sizes)[:-1], axis=dim)


def _sum(a, dims=None, keepdim=False, dtype=None):
    dims = tuple(range(a.ndim)) if not dims else tuple(d % a.ndim for d in dims)
    return np.sum(a, axis=dims, keepdims=keepdim)


def _squeeze(a, dims=None):
    dims = [dims] if isinstance(dims, int) else dims
    if dims is None:
        return np.squeeze(a)
    return np.squeeze(a, axis=tuple(d % a.ndim for d in dims if a.shape[d] == 1))


def _mul(a, b):
    return np.multiply(a, b, dtype=object)


def _needs_a_number(name):
    def refuse(*args, **kwargs):
        raise TracingError(f"aten.{name} needs the numbers the symbols stand for (a comparison or a branch on values)")
    return refuse


#: Core ATen operators (by packet name) -> a function of object arrays
OPS = {
    **COMMON,
    "add": lambda a, b, alpha=1: np.add(a, _mul(alpha, b) if alpha != 1 else b, dtype=object),
    "sub": lambda a, b, alpha=1: np.subtract(a, _mul(alpha, b) if alpha != 1 else b, dtype=object),
    "rsub": lambda a, b, alpha=1: np.subtract(b, _mul(alpha, a) if alpha != 1 else a, dtype=object),
    "mul": _mul,
    "div": lambda a, b, rounding_mode=None: np.true_divide(a, b, dtype=object),
    "neg": lambda a: np.negative(a, dtype=object),
    "reciprocal": lambda a: map_entries(lambda u: 1 / u, a),
    "sigmoid": lambda a: map_entries(F.sigmoid, a),
    "relu": lambda a: map_entries(F.relu, a),
    "softplus": lambda a, beta=1, threshold=20: map_entries(lambda u: F.softplus(beta * u) / beta, a),
    "log_sigmoid_forward": lambda a: (map_entries(F.log_sigmoid, a), None),
    "maximum": lambda a, b: pair(maximum, a, b),
    "minimum": lambda a, b: pair(minimum, a, b),
    "clamp": clamp,
    "clamp_min": lambda a, lo: clamp(a, lo),
    "clamp_max": lambda a, hi: clamp(a, None, hi),
    "mm": lambda a, b: np.matmul(a, b),
    "bmm": lambda a, b: np.matmul(a, b),
    "matmul": lambda a, b: np.matmul(a, b),
    "addmm": lambda c, a, b, beta=1, alpha=1: np.add(_mul(beta, c), _mul(alpha, np.matmul(a, b)), dtype=object),
    "permute": lambda a, dims: np.transpose(a, dims),
    "t": lambda a: a.T,
    "transpose": lambda a, d0, d1: np.swapaxes(a, d0, d1),
    "view": lambda a, shape: np.reshape(a, shape),
    "reshape": lambda a, shape: np.reshape(a, shape),
    "_unsafe_view": lambda a, shape: np.reshape(a, shape),
    "unsqueeze": lambda a, dim: np.expand_dims(a, dim if dim >= 0 else a.ndim + 1 + dim),
    "squeeze": _squeeze,
    "expand": lambda a, shape, implicit=False: np.broadcast_to(
        a, [a.shape[k - (len(shape) - a.ndim)] if s == -1 else s for k, s in enumerate(shape)]),
    "clone": lambda a, memory_format=None: np.array(a, dtype=object, copy=True),
    "alias": lambda a: a,
    "detach": lambda a: a,
    "lift_fresh_copy": lambda a: a,
    "_to_copy": lambda a, **kwargs: a,
    "contiguous": lambda a, memory_format=None: a,
    "select": lambda a, dim, index: np.take(a, index, axis=dim),
    "slice": _slice,
    "slice_scatter": _slice_scatter,
    "select_scatter": _select_scatter,
    "copy": lambda a, src, non_blocking=False: np.array(np.broadcast_to(src, np.shape(a)), dtype=object),
    "split_with_sizes": _split,
    "split": _split,
    "unbind": lambda a, dim=0: [np.take(a, k, axis=dim) for k in range(a.shape[dim])],
    "cat": lambda arrays, dim=0: np.concatenate([np.asarray(a, dtype=object) for a in arrays if np.size(a)],
                                                axis=dim),
    "stack": lambda arrays, dim=0: np.stack(arrays, axis=dim),
    "sum": _sum,
    "full": lambda size, value, **kwargs: filled(size, value),
    "zeros": lambda size, **kwargs: filled(size, 0),
    "ones": lambda size, **kwargs: filled(size, 1),
    "empty": lambda size, **kwargs: filled(size, 0),
    "new_zeros": lambda a, size, **kwargs: filled(size, 0),
    "new_ones": lambda a, size, **kwargs: filled(size, 1),
    "zeros_like": lambda a, **kwargs: filled(np.shape(a), 0),
    "ones_like": lambda a, **kwargs: filled(np.shape(a), 1),
    "full_like": lambda a, value, **kwargs: filled(np.shape(a), value),
    "scalar_tensor": lambda value, **kwargs: filled((), value),
}
for _name in ("gt", "ge", "lt", "le", "eq", "ne", "where", "sign", "nonzero", "_local_scalar_dense", "item"):
    OPS[_name] = _needs_a_number(_name)


def _where(node):
    """The user's line a node came from (``torch.export`` keeps the stack trace), or ''."""
    trace = node.meta.get("stack_trace") or ""
    lines = [ln.strip() for ln in trace.strip().splitlines() if ln.strip()]
    for k in range(len(lines) - 1, -1, -1):
        if lines[k].startswith("File "):
            return lines[k] + (f": {lines[k + 1]}" if k + 1 < len(lines) else "")
    return ""


def _value(arg, env):
    if isinstance(arg, torch.fx.Node):
        return env[arg]
    if isinstance(arg, (list, tuple)):
        return type(arg)(_value(a, env) for a in arg)
    return arg


def interpret(program, inputs: dict):
    """The outputs of ``program`` (an ExportedProgram) on object arrays; ``inputs`` maps each
    placeholder's name (the user inputs' ``arg``, a parameter's ``target``) to its array."""
    env = {}
    for node in program.graph.nodes:
        if node.op == "placeholder":
            if node.name not in inputs:
                raise TracingError(f"the graph reads {node.name}, which is no argument or parameter symrnn gave it")
            env[node] = inputs[node.name]
        elif node.op == "call_function":
            env[node] = _call(node, env)
        elif node.op == "output":
            return [np.asarray(v, dtype=object) for v in torch.utils._pytree.tree_leaves(_value(node.args[0], env))
                    if v is not None]
        else:
            raise TracingError(f"a graph node of kind {node.op} ({node.target})")
    raise TracingError("the exported graph has no output")


def _call(node, env):
    args, kwargs = _value(node.args, env), {k: _value(v, env) for k, v in node.kwargs.items()}
    if node.target is operator.getitem:
        return args[0][args[1]]
    packet = getattr(getattr(node.target, "overloadpacket", None), "__name__", str(node.target))
    op = OPS.get(packet)
    where = _where(node)
    if op is None:
        raise TracingError(f"torch.export's graph has the operator {node.target}, which symrnn cannot read as a "
                           f"cell's equation" + (f" (from {where})" if where else ""), where)
    kwargs = {k: v for k, v in kwargs.items() if k not in ("dtype", "layout", "device", "pin_memory",
                                                           "memory_format", "non_blocking")}
    try:
        return op(*args, **kwargs)
    except TracingError as exc:
        raise TracingError(f"{exc}" + (f" (from {where})" if where else ""), where) from None
    except (ValueError, IndexError, TypeError) as exc:
        raise TracingError(f"aten.{packet} on symbols: {type(exc).__name__}: {exc}"
                           + (f" (from {where})" if where else ""), where) from None


class _Call(torch.nn.Module):
    """A Function's ``apply`` (or a custom operator's implementation) as the module ``torch.export`` takes."""

    def __init__(self, call):
        super().__init__()
        self.call = call

    def forward(self, *args):
        return self.call(*args)


def capture(call, module, weights, shapes, dtype=torch.float64):
    """``call`` exported at ``shapes`` (data first, then the weights) and decomposed to Core ATen:
    ``(program, placeholder names in the order of the arrays)``.  A module's weights (``weights``:
    ``[(qualified name, Parameter)]``) are set to parameters of their shapes for the export and put back."""
    n_data = len(shapes) - len(weights)
    examples = [torch.zeros(s, dtype=dtype) + 0.5 for s in shapes]
    target = module if module is not None else _Call(call)
    saved = []
    try:
        for (name, p), e in zip(weights, examples[n_data:]):
            owner, _, leaf = name.rpartition(".")
            saved.append((owner, leaf, getattr(module.get_submodule(owner), leaf)))
            setattr(module.get_submodule(owner), leaf, torch.nn.Parameter(e))
        data = tuple(examples[:n_data] if module is not None else examples)
        try:
            with warnings.catch_warnings(), _quiet_torch_logs():
                warnings.simplefilter("ignore", FutureWarning)  # torch's own deprecations inside export
                program = torch.export.export(target, data, strict=False).run_decompositions()
        except Exception as exc:  # noqa: BLE001 - whatever stopped torch.export: its message names the line
            raise TracingError(f"torch.export could not capture the forward: {type(exc).__name__}: "
                               f"{str(exc).strip().splitlines()[0] if str(exc).strip() else ''}") from None
    finally:
        for owner, leaf, p in saved:
            setattr(module.get_submodule(owner), leaf, p)
    order, users = [], iter(range(n_data if module is not None else len(shapes)))
    by_target = {name: k for k, (name, _) in enumerate(weights)}
    names = [None] * len(shapes)
    for spec in program.graph_signature.input_specs:
        kind = spec.kind.name
        if kind == "USER_INPUT":
            names[next(users)] = spec.arg.name
        elif kind == "PARAMETER" and spec.target in by_target:
            names[n_data + by_target[spec.target]] = spec.arg.name
        else:
            order.append(spec)
    if order:
        raise TracingError(f"the exported graph reads {[s.target for s in order]} (buffers or constants symrnn "
                           f"does not give it)")
    return program, names
