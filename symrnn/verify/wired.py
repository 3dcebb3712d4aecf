"""One verifier entry for the loss function of a wired model, whatever the family (an encoder-decoder,
:mod:`symrnn.verify.seq2seq`; a captioning RNN, :mod:`symrnn.verify.captioning`): :func:`verify_wired`
runs the cases (:func:`symrnn.verify.cases.run_cases`), then the family's ``locate`` names the first part
of the backward pass with wrong gradients (:func:`first_wrong_part`), a path and a step."""
from __future__ import annotations

from dataclasses import replace

import numpy as np

from ..errors import UnknownNameError
from .assess import assess
from .cases import run_cases
from .diagnose import place_first_wrong
from .hygiene import call
from .modes import dtype_of, loss_and_grads_returned
from .problems import exact
from .result import Verification


class WiredLossFunction:
    """The user's ``fn(...) -> (loss, grads)`` called with the roles in ``args`` (an encoder-decoder's, a
    captioning RNN's, a stacked network's: :mod:`symrnn.verify.stack`): a family gives
    :meth:`data` (every role's value for a problem, the parameters in the user's names) and :meth:`keys`
    (what the gradients are keyed by, for messages), and may read gradients that are no parameter's in
    :meth:`extra` (``{key judged: (user's name, value as returned, value in symrnn's layout)}``)."""

    step = False

    def __init__(self, task, layout, args, fn):
        self.model, self.layout, self.args, self.fn = task, layout, tuple(args), fn
        self.cell_name = self.cell = task.cell.name  # what the judging code hands to the layout

    def call(self, data, problem, findings, what):
        return call(self.fn, [data[r] for r in self.args], list(self.args), what, problem, findings)

    def extra(self, grads, user_params, problem, what) -> dict:
        return {}

    def run(self, problem, findings, second=False):
        user_params = self.layout.to_user(self.cell_name, problem.params)
        what = f"{getattr(self.fn, '__name__', 'loss')}(...)"
        run, grads = loss_and_grads_returned(self.call(self.data(problem, user_params), problem, findings, what),
                                             what, self.keys(user_params))
        extra = self.extra(grads, user_params, problem, what)
        for v in list(grads.values()) + [v for _, v, _ in extra.values()]:
            dtype_of(v, run.dtypes)
        run.grads = self.layout.from_user(grads, what)
        run.user_grads = {"d" + k: grads[k] for k in user_params}
        for key, (name, value, canonical) in extra.items():
            run.grads[key] = np.asarray(canonical, dtype=float)
            run.user_grads[name] = value
        return run


def check_roles(args, roles, need="params"):
    """Refuse ``args`` naming a role not in ``roles``, or without ``need`` (None: without any role)."""
    unknown = [a for a in args if a not in roles]
    if unknown or (need not in args if need else not args):
        raise UnknownNameError(f"args={tuple(args)!r}: the roles are {roles}"
                               + (f" and {need} is needed" if need else "")
                               + (f"; unknown: {unknown}" if unknown else "") + ".")


def verify_wired(adapter, problems, mode, locate, probe, pick=None, rename=None) -> Verification:
    """Run ``problems`` through ``adapter`` (the user's loss function); when a gradient is wrong, localise
    it with ``locate(adapter, problem, run, exact, verdicts)`` on the failing case whose label holds
    ``probe`` (else ``pick(failing)``, the first by default).  ``rename`` maps a gradient's name as
    judged to its name in the report (``dx`` -> ``dsrc``)."""
    result = run_cases(adapter, problems, mode, adapter.layout.name)
    failing = [p for p, c in zip(problems, result.cases) if not c.ok]
    if result.forward.ok and failing and result.explanation is None:
        problem = next((p for p in failing if probe in p.label), None) or (pick or (lambda f: f[0]))(failing)
        run = adapter.run(problem, [])
        ex = exact(adapter.model, problem)
        verdicts = assess(adapter, problem, run, ex)[2]
        if verdicts is not None:
            result = replace(result, localisation=locate(adapter, problem, run, ex, verdicts))
    for old, new in (rename or {}).items():
        for g in result.gradients:
            g.name = new if g.name == old else g.name
        for c in result.cases:
            c.wrong = [new if w == old else w for w in c.wrong]
        if result.localisation.get("gradient") == old:
            result = replace(result, localisation=dict(result.localisation, gradient=new))
    return result


def first_wrong_part(verdicts, order, part_of):
    """``(out, said)``: the first part in ``order`` (the backward pass's) with a wrong gradient, the
    other wrong parts and the first wrong gradient's name; ``(None, None)`` when no part is wrong."""
    wrong = [v for v in verdicts if not v.ok]
    parts = [p for p in order if any(part_of(v.name) == p for v in wrong)]
    if not parts:
        return None, None
    part = parts[0]
    out = {"part": part, "parts_wrong": parts, "gradient": next(v.name for v in wrong if part_of(v.name) == part),
           "path": None, "step": None}
    later, one = ", ".join(f"the {p}" for p in parts[1:]), len(parts) == 2
    said = [f"the mistake is in the {part}: of the parts whose gradients are wrong, it is the first the backward "
            f"pass reaches from the loss"
            + (f" ({later}, wrong too, {'comes' if one else 'come'} after it: what the {part} sends back reaches "
               f"{'it' if one else 'them'}, so {'it' if one else 'they'} may be right on {'its' if one else 'their'} "
               f"own)" if len(parts) > 1 else "")]
    return out, said


def first_wrong_step(user, exact_, tol, inputs="the input gradient", message="dL/dh"):
    """``(step from 1, message)`` of the first wrong thing of a part's backward pass, from per-step rows
    (``inputs`` names them, ``message`` the state's gradient, in the model's terms), or None: a local
    derivative when only one step's rows are wrong, else said as
    :func:`symrnn.verify.diagnose.place_first_wrong` can tell it."""
    bad = [t for t in range(len(exact_)) if np.any(np.abs(user[t] - exact_[t]) > tol[t])]
    if not bad:
        return None
    return place_first_wrong(bad, len(exact_), message=message, inputs=inputs)


def with_first_wrong_step(out, said, step, where, label):
    """``out`` with the first wrong step (``step``: ``(t, words)`` or None) said to be in ``where``'s
    backward, and the message of all that was ``said`` about the case ``label``."""
    if step is not None:
        said = said + [f"in the {where} (t counts its steps from 1), {step[1]}"]
    return dict(out, step=step[0] if step is not None else out.get("step"),
                message="; ".join(said) + f" (case {label!r})")
