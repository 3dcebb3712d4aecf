"""PyTorch code as a NumPy layer: a ``torch.autograd.Function`` subclass, a ``torch.library``
custom operator with a registered autograd formula, or an ``nn.Module`` whose forward calls one.

The forward runs on tensors of the code's dtype and device made from the verifier's float64 arrays;
the backward is ``torch.autograd.grad`` of the states with the verifier's upstream gradient, which
runs the user's backward.  Tensors saved for the backward are watched through
``torch.autograd.graph.saved_tensors_hooks``: one whose version counter moved between the save and
the backward (modified in place after it was saved) is reported as hygiene, and the backward reads
the modified values, as it would in training.
"""
from __future__ import annotations

import inspect

import numpy as np
import torch

from ...errors import UnknownNameError, UserCodeError
from ..hygiene import Finding
from .adapted import FrameworkCode, data_and_weights, final_outputs, ignores, named, role_of
from .torch_state import Packed, state_form

DTYPES = {"float64": torch.float64, "float32": torch.float32, "float16": torch.float16,
          "bfloat16": torch.bfloat16}
_NAMES = {v: k for k, v in DTYPES.items()}


def _custom_op_types():
    types = [torch._ops.OpOverload, torch._ops.OpOverloadPacket]
    try:
        from torch._library.custom_ops import CustomOpDef
        types.append(CustomOpDef)
    except ImportError:  # pragma: no cover - an older torch
        pass
    return tuple(types)


def is_torch_target(target) -> bool:
    """``target`` is an autograd Function subclass, a custom operator or a module."""
    if isinstance(target, type) and issubclass(target, torch.autograd.Function):
        return True
    return isinstance(target, (torch.nn.Module,) + _custom_op_types())


def _dtype(dtype, default):
    if dtype is None:
        return default
    if isinstance(dtype, torch.dtype):
        if dtype not in _NAMES:
            raise UnknownNameError(f"dtype {dtype} is not a floating dtype symrnn judges; use one of {list(DTYPES)}.")
        return dtype
    name = str(dtype).replace("torch.", "")
    if name not in DTYPES:
        raise UnknownNameError(f"dtype {dtype!r}: use one of {list(DTYPES)}.")
    return DTYPES[name]


def _positional(parameters, skip_first=False, keep_defaults=()):
    out = []
    for k, p in enumerate(parameters):
        if skip_first and k == 0:
            continue
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD, p.KEYWORD_ONLY):
            continue
        if p.default is not p.empty and role_of(p.name) not in keep_defaults:
            continue
        out.append(p.name)
    return out


def _callable_and_names(target):
    """``(call, argument names, kind)`` of a Function subclass or a custom operator."""
    if isinstance(target, type):
        own_setup = target.setup_context is not torch.autograd.Function.setup_context
        names = _positional(inspect.signature(target.forward).parameters.values(), skip_first=not own_setup)
        return target.apply, names, f"torch.autograd.Function {target.__name__}"
    op = target.default if isinstance(target, torch._ops.OpOverloadPacket) else target
    if isinstance(op, torch._ops.OpOverload):
        names = [a.name for a in op._schema.arguments if a.default_value is None and not a.kwarg_only]
        return op, names, f"torch.library operator {op._schema.name}"
    init = getattr(op, "_init_fn", None)
    names = _positional(inspect.signature(init).parameters.values()) if init is not None else []
    return op, names, f"torch.library operator {getattr(op, '_name', op)}"


def _first_tensor(out, what):
    """The states of every step: the first tensor the code returned."""
    while isinstance(out, (tuple, list)) and out:
        out = out[0]
    if not isinstance(out, torch.Tensor):
        raise UserCodeError(f"{what} returned {type(out).__name__}; expected the states of every step as a tensor "
                            f"(first, when it returns several).")
    return out


class _Watch:
    """Saved tensors and their version counters at the save; a change at the backward is a finding."""

    def __init__(self, findings, what):
        self.findings, self.what = findings, what
        self.reported = set()  # storages already reported (by the save watch, then by the hooks)

    def pack(self, tensor):
        return tensor, tensor._version, f"saved for the backward ({tensor.dim()}-d)"

    def unpack(self, packed, when="the save and the backward"):
        tensor, version, label = packed
        key = (tensor.untyped_storage().data_ptr(), tensor.storage_offset(), tuple(tensor.shape))
        if tensor._version != version and key not in self.reported:
            self.reported.add(key)
            message = (f"{self.what}: a tensor {label} was modified in place after it was saved (its version "
                       f"counter moved by {tensor._version - version} between {when}); the backward reads the "
                       f"modified values: save a copy, or write the update out of place")
            if all(f.message != message for f in self.findings):
                self.findings.append(Finding("saved-tensor-modified", message, severity="error"))
        return tensor


class _SaveWatch:
    """``ctx.save_for_backward`` recorded while the forward runs: a tensor whose version counter moves
    before the forward returns was modified in place after it was saved (torch packs a custom
    Function's saved tensors only when its forward returns, so neither it nor the hooks see this)."""

    def __init__(self, watch, names=None):
        self.watch, self.saved, self.names = watch, [], names or {}  # id(input tensor) -> the user's name

    def __enter__(self):
        ctx_class = torch.autograd.function.FunctionCtx
        self.original = ctx_class.save_for_backward
        saved, original, names = self.saved, self.original, self.names

        def save_for_backward(ctx, *tensors):
            saved.extend((t, t._version, f"saved as argument {k + 1} of ctx.save_for_backward"
                          + (f" (the forward's input {names[id(t)]})" if id(t) in names else ""))
                         for k, t in enumerate(tensors) if isinstance(t, torch.Tensor))
            return original(ctx, *tensors)
        ctx_class.save_for_backward = save_for_backward
        return self

    def __exit__(self, *exc):
        torch.autograd.function.FunctionCtx.save_for_backward = self.original
        for packed in self.saved:
            self.watch.unpack(packed, when="ctx.save_for_backward and the end of the forward")
        return False


class _Cache:
    def __init__(self, h, inputs, finals=None):
        self.h, self.inputs, self.finals = h, inputs, finals or {}


def _final_tensors(out, h, record):
    """``{"h": h_n, "c": c_n}`` among the tensors returned after the states of every step (those
    attached to the graph), recorded in ``record["returned"]``."""
    rest = []
    stack = list(out[1:]) if isinstance(out, (tuple, list)) else []
    while stack:
        item = stack.pop(0)
        if isinstance(item, (tuple, list)):
            stack[:0] = list(item)
        elif isinstance(item, torch.Tensor) and item.requires_grad and item.is_floating_point():
            rest.append(item)
    found = final_outputs([_numpy(t) for t in rest], _numpy(h))
    record["returned"] = tuple(found)
    return {s: rest[k] for s, k in found.items()}


def _module_parts(module, dtype, device):
    """``(call, argument names, kind, label, dtype, device, batch_first, weights)`` of an nn.Module."""
    params = list(module.named_parameters())
    first = params[0][1] if params else None
    dtype = _dtype(dtype, first.dtype if first is not None else torch.float64)
    device = torch.device(device) if device is not None else (first.device if first is not None
                                                               else torch.device("cpu"))
    data = _positional(inspect.signature(module.forward).parameters.values(), keep_defaults=("h0", "c0"))
    weights = [(name, p) for name, p in params if p.requires_grad]
    kind, batch_first = f"nn.Module {type(module).__name__}", getattr(module, "batch_first", None)
    form, state_at = state_form(module, data, weights)
    if form is not None:  # nn.LSTM's hx = (h0, c0), a layer axis: the verifier's x, h0, c0 packed by Packed
        if form.pair:
            data.insert(state_at + 1, "cx" if data[state_at].lower() == "hx" else "c0")
        kind += f" (state {form.describe()})"
        module, weights = Packed(module, form, state_at), [("inner." + name, p) for name, p in weights]
    arg_names = data + [name.rsplit(".", 1)[-1] for name, _ in weights]
    return module, arg_names, kind, kind.split(" ")[1], dtype, device, batch_first, weights


def _callable_parts(target, dtype, device):
    """The same as :func:`_module_parts` for a Function subclass or a custom operator."""
    call, arg_names, kind = _callable_and_names(target)
    label = getattr(target, "__name__", None) or kind.rsplit(" ", 1)[-1]
    return call, arg_names, kind, label, _dtype(dtype, torch.float64), torch.device(device or "cpu"), None, []


def _runner(call, module, weights, names, dtype, device, watch, record):
    """The NumPy forward of the code: tensors (the module's weights as fresh Parameters) from arrays,
    the saved tensors watched; returns ``(h as NumPy, the tensors to differentiate)``."""
    n_data = len(names) - len(weights)

    def forward(*arrays):
        watch.reported.clear()
        tensors = [torch.tensor(np.asarray(a), dtype=dtype, device=device).requires_grad_() for a in arrays[:n_data]]
        if module is not None:
            leaves = list(tensors)
            for (name, _), a in zip(weights, arrays[n_data:]):  # new Parameters: the verifier's sizes and dtype
                owner, _, leaf = name.rpartition(".")
                p = torch.nn.Parameter(torch.tensor(np.asarray(a), dtype=dtype, device=device))
                setattr(module.get_submodule(owner), leaf, p)
                leaves.append(p)
        else:
            tensors += [torch.tensor(np.asarray(a), dtype=dtype, device=device).requires_grad_()
                        for a in arrays[n_data:]]
            leaves = tensors
        with _SaveWatch(watch, {id(t): n for t, n in zip(leaves, names)}), \
                torch.autograd.graph.saved_tensors_hooks(watch.pack, watch.unpack):
            out = call(*tensors)
        h = _first_tensor(out, watch.what)
        return _numpy(h), _Cache(h, leaves, _final_tensors(out, h, record))
    return forward


def _as_tensor(g, like):
    return torch.as_tensor(np.asarray(g), dtype=like.dtype, device=like.device).reshape(like.shape)


def _backward(kind, record):
    """``backward(dh, [dh_n, dc_n,] cache)``: the gradients of the inputs for ``dh`` at every step and
    the gradients arriving at the final states (None: none)."""
    def backward(dh, *more):
        *finals, cache = more
        if not cache.h.requires_grad:
            raise UserCodeError(f"{kind}: the states it returned do not require grad (no backward is attached).")
        outputs, upstream = [cache.h], [_as_tensor(dh, cache.h)]
        for state, g in zip(("h", "c"), finals):
            if g is None:
                continue
            if state not in cache.finals:
                raise UserCodeError(f"{kind} returned no {state}_n in this call (it did in another).")
            outputs.append(cache.finals[state])
            upstream.append(_as_tensor(g, cache.finals[state]))
            if state not in record.setdefault("checked", set()):  # the gradient at h_n alone: ignored?
                record["checked"].add(state)
                alone = torch.autograd.grad(outputs[-1], cache.inputs, grad_outputs=upstream[-1], allow_unused=True,
                                            retain_graph=True)
                if ignores([None if a is None else _numpy(a) for a in alone]):
                    record.setdefault("ignored", set()).add(state)
        grads = torch.autograd.grad(outputs, cache.inputs, grad_outputs=upstream, allow_unused=True,
                                    retain_graph=True)
        return tuple(_numpy(torch.zeros_like(t) if g is None else g) for g, t in zip(grads, cache.inputs))
    return backward


def _symbolic(target, call, module, weights):
    """One step of the code on object arrays of symbols, through ``torch.export`` (once per shape)."""
    from .torch_graph import capture, interpret

    if isinstance(target, _custom_op_types()):
        call = getattr(target, "_init_fn", None)
        if call is None:
            return None
    programs = {}

    def symbolic(arrays):
        shapes = tuple(tuple(np.shape(a)) for a in arrays)
        if shapes not in programs:
            programs[shapes] = capture(call, module, weights, shapes)
        program, names = programs[shapes]
        return interpret(program, dict(zip(names, arrays)))
    return symbolic


def adapt(target, dtype=None, device=None) -> FrameworkCode:
    """A :class:`~symrnn.verify.frameworks.adapted.FrameworkCode` of a torch target.

    Parameters
    ----------
    target : type, custom operator or torch.nn.Module
    dtype : str or torch.dtype, optional
        Default a module's own dtype, else float64.
    device : str or torch.device, optional
        Default a module's own device, else the CPU.

    Returns
    -------
    FrameworkCode
    """
    module = target if isinstance(target, torch.nn.Module) else None
    parts = _module_parts(module, dtype, device) if module is not None else _callable_parts(target, dtype, device)
    call, arg_names, kind, label, dtype, device, batch_first, weights = parts
    module = call if module is not None else None  # a module taking hx = (h0, c0): its Packed wrapper
    roles = data_and_weights(arg_names, kind)
    if dtype == torch.bfloat16:
        _bfloat16()  # NumPy has no bfloat16: ml_dtypes' (installed with JAX) carries it to the judge
    findings = []
    watch = _Watch(findings, kind)
    record = {}  # the final states the forward returns, those whose gradient the backward ignores
    forward = _runner(call, module, weights, arg_names, dtype, device, watch, record)

    def restore():
        for name, p in weights:  # the module's own Parameter objects, untouched
            owner, _, leaf = name.rpartition(".")
            setattr(module.get_submodule(owner), leaf, p)

    return FrameworkCode(named(forward, arg_names, f"{label}.forward"),
                         named(_backward(kind, record), ["dh", "dh_n", "dc_n", "cache"], f"{label}.backward"),
                         roles, dict(zip(roles, arg_names)), f"{kind}, {_NAMES[dtype]} on {device}", _NAMES[dtype],
                         batch_first, findings, restore if module is not None else None,
                         python=f"symrnn.verify.verify_framework({label}, ..., replay={{path!r}})",
                         symbolic=_symbolic(target, call, module, weights), finals=record)


def _bfloat16():
    try:
        import ml_dtypes
    except ImportError:
        raise UnknownNameError("dtype bfloat16 needs the package ml_dtypes (NumPy has no bfloat16; JAX installs "
                               "it): pip install ml_dtypes") from None
    return ml_dtypes.bfloat16


def _numpy(tensor):
    """A tensor as a NumPy array of its own dtype (bfloat16 as ml_dtypes'), on the CPU, a copy."""
    tensor = tensor.detach().to("cpu")
    if tensor.dtype == torch.bfloat16:
        return tensor.to(torch.float32).numpy().astype(_bfloat16())
    return tensor.numpy().copy()
