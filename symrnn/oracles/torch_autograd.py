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

from ..functions import rule_of
from ..losses import scale_of
from ..symbols import MatVec, Param, tsym


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
        rhs, namespace = _with_torch_rules(torch, rhs)
        fn = sp.lambdify(symbols, rhs, modules=[namespace], dummify=True)
        out.append((eq, symbols, fn))
    return out


def torch_loss_and_grads(model, params, inputs, targets, h0=None, mask=None):
    """``(loss, grads)`` from torch autograd in float64, keyed like ``Model.loss_and_grads``."""
    torch = _torch()
    params_np, X, Y, S0, sched, mask = model._prepare(params, inputs, targets, h0, mask)
    P = {k: torch.tensor(np.asarray(v, dtype=np.float64), requires_grad=True) for k, v in params_np.items()}
    X_in = torch.tensor(np.asarray(inputs, dtype=np.float64), requires_grad=True)
    S = {s: torch.tensor(v.astype(np.float64), requires_grad=True) for s, v in S0.items()}
    env = {Param(k): v for k, v in P.items()}
    cell = model.cell
    steps = _compiled(cell.equations, torch)
    N = X.shape[1]
    zero_x = torch.zeros(N, model.sizes["D"], dtype=torch.float64)  # steps without an input
    state = dict(S)
    outputs = []
    for t in range(sched.T):
        values = dict(env)
        values[cell.input_symbol] = X_in[t - sched.input_steps.start] if t in sched.input_steps else zero_x
        for s in cell.states:
            values[tsym(s, -1)] = state[s]
        for eq, symbols, fn in steps:
            values[eq.target] = fn(*[values[s] for s in symbols])
        state = {s: values[tsym(s)] for s in cell.states}
        if t in sched.output_steps:
            outputs.append(state[cell.output_state])
    Hs = torch.stack(outputs)
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
    grads = {k: v.grad.numpy() if v.grad is not None else np.zeros(v.shape) for k, v in P.items()}
    grads[model.input_name] = X_in.grad.numpy()
    for s in cell.states:
        grads[model.initial_state_key(s)] = S[s].grad.numpy() if S[s].grad is not None else np.zeros(S[s].shape)
    return float(loss.detach()), grads
