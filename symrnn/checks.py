"""Comparing gradients: the error measure used everywhere, and the agreement table.

The error of a gradient ``g`` against a reference ``r`` is
``max |g - r| / max(1, max |r|)``: relative for large gradients, absolute for
small ones (a relative error of a gradient that is 1e-20 means nothing).
"""
from __future__ import annotations

import numpy as np

from .oracles import ScalarOracle, central_differences
from .oracles.finite_differences import high_precision_differences


def relative_error(g, reference) -> float:
    g = np.asarray(g, dtype=np.float64)
    r = np.asarray(reference, dtype=np.float64)
    return float(np.max(np.abs(g - r), initial=0.0) / max(1.0, float(np.max(np.abs(r), initial=0.0))))


def max_error(grads, reference) -> tuple[float, str]:
    """The largest :func:`relative_error` over the keys of ``reference``, and its key."""
    return max(((relative_error(grads[k], reference[k]), k) for k in reference), default=(0.0, ""))


def random_problem(model, T_in=4, T_out=None, N=2, seed=0, scale=0.8):
    """Parameters, inputs, targets and initial states drawn for ``model``."""
    rng = np.random.default_rng(seed)
    T_out = (1 if model.architecture.name in ("many-to-one", "one-to-one") else T_in) if T_out is None else T_out
    if model.architecture.name in ("one-to-many", "one-to-one"):
        T_in = 1
    params = model.init_params(seed, scale=scale)
    x = rng.normal(size=(T_in, N, model.sizes["D"]))
    if model.loss_rule.name == "cross-entropy":
        y = rng.integers(0, model.sizes["K"], size=(T_out, N))
    else:
        y = rng.normal(size=(T_out, N, model.parts()[-1].width))
    h0 = {s: rng.normal(size=model.initial_state_shape(s, N)) * 0.5 for s in model.state_names}
    return params, x, y, h0


#: The Richardson row evaluates the scalar program 8 times per entry in mpmath: past this many entries
#: (parameters, inputs and initial states of one sequence) it is left out.
RICHARDSON_ENTRIES = 200


def agreement_table(model, seed=0, T_in=4, N=2) -> str:
    """A Markdown table: the generated gradients of any model against every independent route on random
    data (the unrolled scalar program, torch autograd, PyTorch's own module where it has one, real-time
    recurrent learning where it runs, central differences, Richardson-extrapolated differences in mpmath)."""
    params, x, y, h0 = random_problem(model, T_in=T_in, N=N, seed=seed)
    loss, grads = model.loss_and_grads(params, x, y, h0=h0)
    rows = []
    oracle = ScalarOracle(model, x.shape[0], y.shape[0])
    _, g = oracle.loss_and_grads(params, x, y, h0=h0)
    rows.append(("unrolled scalar oracle (SymPy, float64)", *max_error(grads, g), 1e-12))
    rows += _torch_rows(model, params, x, y, h0, grads)
    rows.append(rtrl_row(model, params, x, y, h0, grads))
    g = central_differences(model, params, x, y, h0=h0)
    rows.append(("central differences (float64, eps=1e-6)", *max_error(grads, g), 1e-6))
    one = {s: v[..., :1, :] for s, v in h0.items()}  # one sequence: mpmath is slow
    _, g_one = model.loss_and_grads(params, x[:, :1], y[:, :1], h0=one)
    if sum(np.size(v) for v in g_one.values()) <= RICHARDSON_ENTRIES:
        g = high_precision_differences(model, params, x[:, :1], y[:, :1], h0=one, digits=30, oracle=oracle)
        rows.append(("Richardson differences (mpmath, 30 digits, 1 sequence)", *max_error(g_one, g), 1e-12))
    return agreement_text(f"Agreement of the generated gradients of {model!r} (loss {loss:.6g})", rows)


def _torch_rows(model, params, x, y, h0, grads):
    try:
        from .oracles.torch_autograd import torch_loss_and_grads, torch_module_grads

        _, g = torch_loss_and_grads(model, params, x, y, h0=h0)
    except ImportError:
        return [("PyTorch autograd (not installed)", float("nan"), "", 1e-12)]
    rows = [("PyTorch autograd (float64)", *max_error(grads, g), 1e-12)]
    g = torch_module_grads(model, params, x, y, h0)
    if g is not None:
        rows.append(("PyTorch nn module, num_layers/bidirectional (float64)", *max_error(grads, g), 1e-12))
    return rows


def rtrl_row(model, params, x, y, h0, grads):
    """The agreement row of real-time recurrent learning (:meth:`symrnn.Model.rtrl_grads`, the forward
    sensitivities): its parameter and initial-state gradients against the generated BPTT ``grads``
    (RTRL gives no input gradient).  A model RTRL does not run (a backward direction needs the future
    of the sequence, a sequence-to-sequence model is not one recurrence) gets a row that says so."""
    from .errors import CellDefinitionError, ShapeError

    try:
        _, g = model.rtrl_grads(params, x, y, h0=h0)
    except CellDefinitionError as exc:  # a cell RTRL does not handle (yet): the message says which and why
        return (f"real-time recurrent learning (does not apply: {exc})", float("nan"), "", 1e-12)
    except (ShapeError, AttributeError):
        why = "a backward direction is not causal" if any(p.reverse for p in model.parts()) else "not one recurrence"
        return (f"real-time recurrent learning (does not apply: {why})", float("nan"), "", 1e-12)
    worst = max((strict_relative_error(g[k], grads[k]), k) for k in g)
    return ("real-time recurrent learning (Model.rtrl_grads; relative to BPTT per key)", *worst, 1e-12)


def strict_relative_error(g, reference) -> float:
    """``max |g - r| / max |r|`` (absolute when ``r`` is zero): relative however small the gradient."""
    g = np.asarray(g, dtype=np.float64)
    r = np.asarray(reference, dtype=np.float64)
    top = float(np.max(np.abs(r), initial=0.0))
    return float(np.max(np.abs(g - r), initial=0.0) / (top if top > 0 else 1.0))


def agreement_text(title, rows) -> str:
    """``title`` and a Markdown table of ``rows`` ``(oracle, max error, where, tolerance)``; an error of
    nan means the oracle does not apply (shown ``-``, verdict ``n/a``)."""
    lines = [title, "", "| oracle | max error | where | tolerance | ok |", "|---|---|---|---|---|"]
    for name, err, key, tol in rows:
        ok = "yes" if err <= tol else ("n/a" if err != err else "NO")
        shown = "-" if err != err else f"{err:.2e}"
        lines.append(f"| {name} | {shown} | {key} | {tol:.0e} | {ok} |")
    return "\n".join(lines)
