"""PyTorch autograd as an oracle for any cell (optional: needs ``torch``).

The forward pass is the cell's equations evaluated with torch operations
(``lambdify`` with a torch namespace); the gradients come from torch's own
autograd, not from anything symrnn derived.  The tests also compare with
``torch.nn.RNN``/``LSTM``/``GRU`` themselves, whose equations are written
independently of ours.
"""
from __future__ import annotations

import numpy as np
import sympy as sp

from ..engine.functions import rule_of
from ..engine.losses import scale_of
from ..engine.symbols import MatVec, Param, tsym


def _torch():
    try:
        import torch
    except ImportError as exc:  # pragma: no cover - torch is a test extra
        raise ImportError("The torch oracle needs PyTorch: pip install torch==2.13.0") from exc
    return torch


def _with_torch_rules(torch, expr):
    """``expr`` with every function renamed to its rule, and the torch implementations of them."""
    namespace = {"MatVec": lambda P, v: v @ P.T, "sqrt": torch.sqrt}
    for f in expr.atoms(sp.Function):
        if not isinstance(f, MatVec):
            namespace[f"{rule_of(f).name}__fn"] = rule_of(f).torch_implementation(torch)
    renamed = expr.replace(lambda e: isinstance(e, sp.Function) and not isinstance(e, MatVec),
                           lambda e: sp.Function(f"{rule_of(e).name}__fn")(*e.args))
    return renamed, namespace


def _compiled(equations, torch):
    out = []
    for eq in equations:
        symbols = sorted(eq.rhs.free_symbols | {m.args[0] for m in eq.rhs.atoms(MatVec)}, key=str)
        rhs = eq.rhs.xreplace({c: sp.Float(c, 30) for c in eq.rhs.atoms(sp.NumberSymbol)})
        # constants such as sqrt(2) or log(2) as numbers: torch's functions take tensors, not Python numbers
        rhs = rhs.replace(lambda e: e.is_number and not e.is_Atom, lambda e: sp.Float(e.evalf(30), 30))
        rhs, namespace = _with_torch_rules(torch, rhs)
        fn = sp.lambdify(symbols, rhs, modules=[namespace], dummify=True)
        out.append((eq, symbols, fn))
    return out


#: The merges of two directions with torch operations, written independently of :data:`symrnn.models.wiring.MERGES`
#: (``torch.maximum`` splits the gradient of an exact tie half and half).
TORCH_MERGES = {
    "concat": lambda torch, f, b: torch.cat([f, b], dim=-1),
    "sum": lambda torch, f, b: f + b,
    "ave": lambda torch, f, b: (f + b) / 2,
    "mul": lambda torch, f, b: f * b,
    "max": lambda torch, f, b: torch.maximum(f, b),
}


def _cell_over_time(torch, part, P, inputs, S):
    """The cell of ``part`` over the list of step inputs (back to front when it runs in reverse);
    returns its output state at each step, aligned with the inputs."""
    cell = part.cell
    env = {Param(k): P[part.prefix + k] for k in cell.params}
    steps = _compiled(cell.equations, torch)
    state = {s: S[s] if part.row is None else S[s][part.row] for s in cell.states}
    outputs = [None] * len(inputs)
    for t in (reversed(range(len(inputs))) if part.reverse else range(len(inputs))):
        values = {**env, cell.input_symbol: inputs[t], **{tsym(s, -1): state[s] for s in cell.states}}
        for eq, symbols, fn in steps:
            values[eq.target] = fn(*[values[s] for s in symbols])
        state = {s: values[tsym(s)] for s in cell.states}
        outputs[t] = state[cell.output_state]
    return outputs


def _unrolled(torch, model, P, X_in, S, sched):
    """Every part of ``model`` at every step: the top's outputs at the scored steps ``(T_out, N, width)``."""
    N = X_in.shape[1]
    zero_x = torch.zeros(N, model.sizes["D"], dtype=torch.float64)  # steps without an input
    seqs = {"input": [X_in[t - sched.input_steps.start] if t in sched.input_steps else zero_x
                      for t in range(sched.T)]}
    top = "input"
    for part in model.parts():
        if part.kind == "cell":
            seqs[part.name] = _cell_over_time(torch, part, P, seqs[part.reads[0]], S)
        elif part.kind in ("merge", "residual"):
            rule = TORCH_MERGES["sum" if part.kind == "residual" else part.detail]
            seqs[part.name] = [rule(torch, a, b) for a, b in zip(*(seqs[r] for r in part.reads))]
        else:
            continue
        top = part.name
    return torch.stack(seqs[top][sched.output_steps.start:sched.output_steps.stop])


def torch_loss_and_grads(model, params, inputs, targets, h0=None, mask=None):
    """``(loss, grads)`` from torch autograd in float64, keyed like the model's ``loss_and_grads``:
    every part of the model (:meth:`parts`) unrolled with torch operations."""
    torch = _torch()
    params_np, X, Y, _, sched, mask = model._prepare(params, inputs, targets, h0, mask)
    P = {k: torch.tensor(np.asarray(v, dtype=np.float64), requires_grad=True) for k, v in params_np.items()}
    X_in = torch.tensor(np.asarray(inputs, dtype=np.float64), requires_grad=True)
    S = {s: torch.tensor(v, requires_grad=True)
         for s, v in model.initial_states(h0, X.shape[1], np.float64).items()}
    Hs = _unrolled(torch, model, P, X_in, S, sched)
    F = torch.nn.functional
    scored = np.ones(Hs.shape[:2], dtype=bool) if mask is None else mask
    weight = torch.tensor(scored.astype(np.float64))[..., None]
    if model.readout is None:
        loss = (Hs * torch.tensor(np.asarray(Y, dtype=np.float64)) * weight).sum()
    else:
        O = Hs @ P["V"].T + P["c"]
        K = O.shape[-1]
        if model.loss_rule.name == "cross-entropy":
            target = (F.one_hot(torch.tensor(np.asarray(Y)), K).to(torch.float64) if np.issubdtype(Y.dtype, np.integer)
                      else torch.tensor(np.asarray(Y, dtype=np.float64)))
            per_entry = -target * F.log_softmax(O, dim=-1)
            size = 1
        else:
            per_entry = float(model.loss_rule.weight) * (O - torch.tensor(np.asarray(Y, dtype=np.float64))) ** 2
            size = K
        loss = (per_entry * weight).sum() * scale_of(model.reduction, scored, size)
    loss.backward()
    grads = {k: v.grad.numpy() if v.grad is not None else np.zeros(v.shape) for k, v in P.items()
             if k in model.param_shapes}  # not a matrix cell's fixed spreads and folds
    grads[model.input_name] = X_in.grad.numpy()
    for s in model.state_names:
        grads[model.initial_state_key(s)] = S[s].grad.numpy() if S[s].grad is not None else np.zeros(S[s].shape)
    return float(loss.detach()), grads


def rnn_module(torch, cell, D, H, num_layers=1, bidirectional=False):
    """PyTorch's ``nn.LSTM``, ``nn.GRU`` or ``nn.RNN`` (``rnn-tanh``, ``rnn-relu``) for a cell, in float64."""
    kind = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU}.get(cell, torch.nn.RNN)
    extra = {} if cell in ("lstm", "gru") else {"nonlinearity": cell.split("-")[1]}
    return kind(D, H, num_layers=num_layers, bidirectional=bidirectional, **extra).double()


def module_gradients(module, cell, H):
    """A module's gradients by parameter name (zeros where it has none), with ``bias_hh`` zeroed where it
    duplicates ``bias_ih`` (both receive dL/db where they are added; GRU's ``b_hn`` apart), so that
    :func:`symrnn.models.layouts.from_torch` adds the pair back into one bias."""
    sd = {k: p.grad.numpy().copy() if p.grad is not None else np.zeros(tuple(p.shape))
          for k, p in module.named_parameters()}
    for k, g in sd.items():
        if k.startswith("bias_hh"):
            g[:2 * H if cell == "gru" else None] = 0
    return sd


def torch_module_grads(model, params, x, y, h0):
    """PyTorch's own ``nn.RNN/LSTM/GRU(num_layers, bidirectional)`` with the readout and loss in torch, keyed
    like the model's gradients; None where torch has no such module (a cell torch does not have, a merge
    other than concat, residual links, layers of mixed directions, or a model without layer rows)."""
    from ..models.layouts import TORCH_GATES, from_torch, to_torch_stack

    torch = _torch()
    parts = model.parts()
    cells = [p for p in parts if p.kind == "cell"]
    layers = sorted({p.layer for p in cells})
    flags = {any(p.reverse for p in cells if p.layer == layer) for layer in layers}
    cell = model.cell.name
    if cell not in TORCH_GATES or any(p.row is None for p in cells) or len(flags) > 1 \
            or any(p.kind == "residual" or (p.kind == "merge" and p.detail != "concat") for p in parts):
        return None
    D, H = model.sizes["D"], model.sizes["H"]
    module = rnn_module(torch, cell, D, H, len(layers), flags.pop())
    module.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in to_torch_stack(cell, params).items()})
    sched = model.architecture.schedule(x.shape[0], np.asarray(y).shape[0])
    xt = torch.tensor(x, requires_grad=True)
    X = torch.cat([xt, torch.zeros(sched.T - x.shape[0], *x.shape[1:], dtype=torch.float64)]) \
        if sched.T > x.shape[0] else xt
    states = [torch.tensor(h0[s], requires_grad=True) for s in model.state_names]
    out, _ = module(X, tuple(states) if cell == "lstm" else states[0])
    out = out[sched.output_steps.start:sched.output_steps.stop]
    F = torch.nn.functional
    if model.readout is None:
        loss = (out * torch.tensor(np.asarray(y, dtype=np.float64))).sum()
        V = c = None
    else:
        V, c = (torch.tensor(params[k], requires_grad=True) for k in ("V", "c"))
        O = out @ V.T + c
        reduction = "sum" if model.reduction == "sum" else "mean"
        if model.loss_rule.name == "cross-entropy":
            loss = F.cross_entropy(O.reshape(-1, O.shape[-1]), torch.tensor(np.asarray(y).reshape(-1)),
                                   reduction=reduction)
        else:
            loss = F.mse_loss(O, torch.tensor(np.asarray(y, dtype=np.float64)), reduction=reduction) \
                * float(model.loss_rule.weight)
    loss.backward()
    sd = module_gradients(module, cell, H)
    grads = {}
    for p in cells:
        grads.update({p.prefix + k: v for k, v in from_torch(cell, sd, layer=p.layer, reverse=p.reverse).items()})
    if V is not None:
        grads["V"], grads["c"] = V.grad.numpy(), c.grad.numpy()
    grads[model.input_name] = xt.grad.numpy()
    for s, t in zip(model.state_names, states):
        grads[model.initial_state_key(s)] = t.grad.numpy()
    return grads
