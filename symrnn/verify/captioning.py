"""Verifying a hand-written image-captioning RNN (CS231n's ``CaptioningRNN.loss``) in loss mode.

The model: image features ``(N, F)`` give the initial state through an affine map,
``h0 = features @ W_proj + b_proj``; the caption's words are looked up in ``W_embed``; a cell
(vanilla tanh RNN or LSTM) runs over them; an affine readout scores the next word; the softmax
cross-entropy of the scored words (not ``<NULL>``) is summed over time and averaged over the batch.

The exact gradients are a wiring of exact pieces.  :class:`symrnn.Model` (the cell, the readout
and the ``batch-mean`` cross-entropy with a mask) gives the exact gradients of its parameters and
of its inputs ``x_t`` and initial state ``h0``; the affine map and the lookup are linear, so their
gradients are the chain rule written out, ``dW_proj = features^T dL/dh0``, ``db_proj = sum_n
dL/dh0`` and ``dW_embed[w] = sum of dL/dx_t over the steps reading w``, with no approximation.
The error model is the verifier's (:mod:`symrnn.verify.judge`): the cell's and the readout's
generated code rounded, the parameters and the features perturbed, and ``h0`` perturbed by the
rounding of its own sum.  The cases, the forward check and the judgement are
:func:`symrnn.verify.core.run_cases` and :func:`symrnn.verify.core.assess`.

A wrong gradient is placed in one part, following the backward pass: ``readout`` (W_vocab,
b_vocab), ``recurrent`` (Wx, Wh, b), then ``projection`` (W_proj, b_proj) and ``embedding``
(W_embed), which both read what the recurrent part sends back.  A case in which every input word
occurs once makes the embedding's rows per-step gradients (the first wrong step of the recurrent
backward); a mask left out of the backward, a projection that receives nothing and repeated
words not accumulated are named.
"""
from __future__ import annotations

import copy
import inspect
from functools import cached_property

import numpy as np

from ..engine.cells import builtin_cell
from ..errors import ShapeError, UnknownNameError, UserCodeError
from ..models.layouts import layout_for
from . import judge as J
from .modes import checked_gradients
from .problems import Problem
from .result import Verification
from .seq2seq import CellName
from ..validation import check_count
from .wired import (WiredLossFunction, check_roles, first_wrong_part, first_wrong_step,
                    verify_wired, with_first_wrong_step)

ROLES = ("params", "features", "captions")
PARTS = ("readout", "recurrent", "projection", "embedding")
#: CS231n's cell_type names, and symrnn's
CELLS = {"rnn": "rnn-tanh", "rnn-tanh": "rnn-tanh", "lstm": "lstm"}
#: the user's (CS231n's) names of the parameters symrnn's Model does not have: symrnn's key -> name
EXTRA = {"proj.W": "W_proj", "proj.b": "b_proj", "emb": "W_embed"}


def part_of(user_name):
    """The part of the model a gradient (``dW_proj``) or parameter (``W_proj``) belongs to."""
    name = user_name[1:] if user_name.startswith("d") and user_name[1:] in _ALL_NAMES else user_name
    return {"W_proj": "projection", "b_proj": "projection", "W_embed": "embedding", "W_vocab": "readout",
            "b_vocab": "readout"}.get(name, "recurrent")


_ALL_NAMES = ("W_proj", "b_proj", "W_embed", "Wx", "Wh", "b", "W_vocab", "b_vocab")


class CaptioningTask:
    """The captioning model as the verifier's judging machinery reads a model.

    A :class:`~symrnn.verify.problems.Problem` holds the caption's inputs ``x`` (word ids ``(T, N)``),
    the scored words ``targets`` ``(T, N)``, the mask of scored steps and the image features as
    ``h0["features"]`` ``(N, F)`` (perturbed by the error model as initial states are)."""

    state_names = ()
    out = "h"
    input_name = "captions"  # word ids: no gradient
    one_cell = False  # several blocks wired: no single-cell fingerprints, no per-term floor

    def __init__(self, model, F, rounding=None):
        self.model, self.F, self.rounding = model, F, rounding
        s = model.sizes
        self.vocab, self.W, self.H = s["K"], s["D"], s["H"]
        self.sizes = {"D": s["D"] + F, "H": s["H"], "K": s["K"]}  # the roundings reaching an entry
        self.cell = CellName(model.cell.name)

    @property
    def param_shapes(self):
        shapes = dict(self.model.param_shapes)
        shapes.update({"proj.W": (self.H, self.F), "proj.b": (self.H,), "emb": (self.vocab, self.W)})
        return shapes

    def init_params(self, seed=0, scale=None):
        from ..models.model import uniform_params

        params = uniform_params(self.param_shapes, self.H, seed, scale)
        params["emb"] = params["emb"] * np.sqrt(self.H)  # embeddings of size one, as the inputs of other cases
        return params

    def initial_state(self, params, features):
        h0 = features @ params["proj.W"].T + params["proj.b"]
        if self.rounding is not None:  # the rounding of the user's sum: up to a few units of its terms' sizes
            size = np.abs(features) @ np.abs(params["proj.W"]).T + np.abs(params["proj.b"])
            h0 = h0 + J.ROUNDINGS * self.rounding.unit * size * self.rounding.rng.uniform(-1, 1, size=h0.shape)
        return h0

    def loss_and_grads(self, params, x, targets, h0=None, mask=None, final_grads=None):
        features, ids = h0["features"], np.asarray(x)
        inner = {k: params[k] for k in self.model.param_shapes}
        loss, g = self.model.loss_and_grads(inner, params["emb"][ids], targets,
                                            h0=self.initial_state(params, features), mask=mask)
        grads = {k: g[k] for k in self.model.param_shapes}
        grads["proj.W"] = g["h0"].T @ features
        grads["proj.b"] = g["h0"].sum(axis=0)
        d_emb = np.zeros(np.shape(params["emb"]))
        np.add.at(d_emb, ids, g["x"])
        grads["emb"] = d_emb
        return loss, grads

    def with_blocks(self, transform):
        """The task of a copy of the model whose generated blocks are ``transform(block)``."""
        rounding = transform if isinstance(transform, J.Rounding) else None  # its projection's sum rounds too
        return CaptioningTask(self.model.with_blocks(transform), self.F, rounding)

    def user_loss(self, params, features, captions, null=0):
        """symrnn's exact loss and gradients in CS231n's names and calling convention:
        ``params`` keyed ``W_proj, b_proj, W_embed, Wx, Wh, b, W_vocab, b_vocab``, ``captions`` ``(N, T+1)``."""
        layout = CaptioningLayout(self)
        canonical = layout.from_user(params, "params")
        captions = np.asarray(captions)
        x, targets = captions[:, :-1].T, captions[:, 1:].T
        loss, grads = self.loss_and_grads(canonical, x, targets, {"features": np.asarray(features, dtype=float)},
                                          targets != null)
        return loss, layout.to_user("", grads, gradients=True)


class CaptioningLayout:
    """CS231n's names and shapes: the cell's and the readout's from the ``cs231n`` preset (row
    convention, LSTM gates i, f, o, g), ``W_proj`` ``(F, H)``, ``b_proj`` ``(H,)``, ``W_embed``
    ``(V, W)``; captions ``(N, T+1)``, batch-major, the first column the ``<START>`` word."""

    name = "cs231n"

    def __init__(self, task):
        self.task = task
        self.cell_layout = layout_for("cs231n", task.model.cell.name)
        self.names, self.convention = self.cell_layout.names, self.cell_layout.convention

    def gates(self, cell_name):
        return self.cell_layout.gates(self.task.model.cell.name)

    def to_user(self, cell_name, params, gradients=False):
        model = self.task.model
        inner = {k: params[k] for k in model.param_shapes}
        out = self.cell_layout.to_user(model.cell.name, inner, gradients=gradients)
        out.update(W_proj=np.asarray(params["proj.W"]).T, b_proj=np.asarray(params["proj.b"]),
                   W_embed=np.asarray(params["emb"]))
        return out

    @cached_property
    def expected(self):
        return {k: np.shape(v) for k, v in self.to_user("", self.task.init_params(0)).items()}

    def from_user(self, user, what):
        """Canonical gradients from the user's dict (every parameter present, shapes checked)."""
        user = checked_gradients(user, self.expected, what, refuse_unknown=True)
        model = self.task.model
        sizes = {"D": self.task.W, "H": self.task.H, "K": self.task.vocab}
        cell = {k: v for k, v in user.items() if k not in EXTRA.values()}
        out = self.cell_layout.from_user(model.cell.name, cell, sizes, gradients=True)
        out.update({"proj.W": user["W_proj"].T, "proj.b": user["b_proj"], "emb": user["W_embed"]})
        return out


class CaptioningLossFunction(WiredLossFunction):
    """``fn(params, features, captions) -> (loss, grads)`` (roles in ``args``), or a bound method of an
    object holding its parameters in a dict ``params`` (CS231n's ``model.loss``), called as
    ``fn(features, captions)`` with the object's ``params`` replaced by the case's for the call."""

    def __init__(self, task, layout, args, fn, owner=None):
        super().__init__(task, layout, args, fn)
        self.owner = owner

    @staticmethod
    def keys(user_params):
        return "the parameters (W_proj, b_proj, W_embed, Wx, Wh, b, W_vocab, b_vocab)"

    @staticmethod
    def data(problem, user_params):
        captions = np.concatenate([problem.x[:1], problem.targets]).T.copy()  # (N, T+1)
        return {"params": user_params, "features": problem.h0["features"], "captions": captions}

    def call(self, data, problem, findings, what):
        if self.owner is None:
            return super().call(data, problem, findings, what)
        saved = self.owner.params
        self.owner.params = copy.deepcopy(data["params"])
        try:
            return super().call(data, problem, findings, what)
        finally:
            self.owner.params = saved


def draw_captions(task, T, N, seed, label, scale=None, null=0, start=1, unique=False):
    """One problem: parameters, features, captions ``<START> w_1 .. w_l <NULL> ..`` of random lengths
    ``l`` (the first example full, so every step is scored somewhere), the mask of the words that are
    not ``<NULL>``; with ``unique``, full captions whose input words all differ."""
    rng = np.random.default_rng(seed)
    params = task.init_params(seed, scale)
    features = rng.normal(size=(N, task.F))
    words = np.array([w for w in range(task.vocab) if w not in (null, start)])
    captions = np.full((T + 1, N), null)
    captions[0] = start
    if unique:
        captions[1:, 0] = rng.permutation(words)[:T]
    else:
        lengths = rng.integers(1, T + 1, size=N)
        lengths[0] = T
        for n, length in enumerate(lengths):
            captions[1:length + 1, n] = rng.choice(words, size=length)
    x, targets = captions[:-1].copy(), captions[1:].copy()
    return Problem(label, params, x, {"features": features}, targets, targets != null)


# -- localisation ----------------------------------------------------------------------------------
def _close(user, candidate, tol):
    return bool(np.all(np.abs(np.asarray(user) - candidate) <= tol + 1e-12 * np.max(np.abs(candidate), initial=0)))


def locate(adapter, problem, run, ex, verdicts):
    """Which part is wrong, what it names, from which step."""
    task = adapter.model
    out, said = first_wrong_part(verdicts, PARTS, part_of)
    if out is None:
        return {}
    part, parts = out["part"], out["parts_wrong"]
    scored = problem.mask
    if scored is not None and not scored.all():  # every step scored: the gradients the mask would leave out
        _, unmasked = task.loss_and_grads(problem.params, problem.x, problem.targets, problem.h0, None)
        if all(_close(run.grads[k], unmasked[k], ex.tol[k]) for k in run.grads):
            out["path"] = "mask"
            said = [f"the {part}: the mask is left out of the backward (the gradients are those of a loss "
                    f"scoring every step, <NULL> padding included; the loss itself is right)"]
    if part == "projection" and out["path"] is None:
        if all(not np.any(run.grads[k]) for k in ("proj.W", "proj.b")):
            out["path"] = "initial state"
            said = ["the projection: dL/dh0 is not sent back through it (dW_proj and db_proj are zero)"]
    if "embedding" in parts and part in ("projection", "embedding") and out["path"] is None:
        ids = problem.x
        counts = np.bincount(ids.ravel(), minlength=task.vocab)
        rows_bad = np.any(np.abs(run.grads["emb"] - ex.grads["emb"]) > ex.tol["emb"], axis=1)
        if rows_bad.any() and np.all(counts[rows_bad] > 1):
            out["path"] = "repeated words"
            said.append("only the rows of words read more than once are wrong: a repeated word's gradients are "
                        "not accumulated (np.add.at(dW_embed, captions_in, dx))")
    step = None
    if part == "recurrent" and np.unique(problem.x).size == problem.x.size:
        rows = (lambda g: np.asarray(g["emb"])[problem.x])
        step = first_wrong_step(rows(run.grads), rows(ex.grads), rows(ex.tol),
                                "the row of dW_embed of the word read")
    return with_first_wrong_step(out, said, step, "recurrent network", problem.label)


CaptioningVerification = Verification  # one result class for every family: its verdict names the wrong part


def _from_owner(owner, cell, sizes):
    """The cell and sizes an object's ``params`` (CS231n's names) show, where not given."""
    params = getattr(owner, "params", None)
    need = ("W_proj", "W_embed", "Wx")
    if not isinstance(params, dict) or any(k not in params for k in need):
        raise UserCodeError(f"{type(owner).__name__}.params must be a dict holding {', '.join(_ALL_NAMES)} (CS231n's "
                            f"CaptioningRNN); got {type(params).__name__}"
                            + (f" with keys {sorted(params)}" if isinstance(params, dict) else "")
                            + ". Or pass a function fn(params, features, captions).")
    F, H = np.shape(params["W_proj"])
    V, W = np.shape(params["W_embed"])
    found = {"F": F, "H": H, "vocab": V, "W": W}
    if cell is None:
        cell = getattr(owner, "cell_type", None) or {H: "rnn", 4 * H: "lstm"}.get(np.shape(params["Wx"])[-1])
    for k, v in found.items():
        if sizes[k] is None:
            sizes[k] = int(v)
        elif sizes[k] != v:
            raise ShapeError(f"{k}={sizes[k]} is given, but {type(owner).__name__}.params has {k}={v}; drop {k} or "
                             f"make them agree.")
    return cell


def verify_captioning(fn, cell=None, *, vocab=None, F=None, W=None, H=None, T=5, N=4, null=None, start=None,
                      args=ROLES, scale=None, seed=0):
    """Verify a hand-written image-captioning RNN's loss function (CS231n's ``CaptioningRNN.loss``).

    ``h0 = features @ W_proj + b_proj``; ``x_t = W_embed[captions[:, t]]``; a vanilla tanh RNN or an
    LSTM (CS231n's row layout, gates i, f, o, g); ``scores = h @ W_vocab + b_vocab``; the softmax
    cross-entropy of ``captions[:, 1:]`` where it is not ``<NULL>``, summed over time and averaged over
    the batch.  Every gradient is judged exactly against symrnn's, and a wrong one is placed in the
    ``readout``, the ``recurrent`` cell, the ``projection`` or the ``embedding``.

    Parameters
    ----------
    fn : callable
        ``fn(params, features, captions) -> (loss, grads)``, ``grads`` a dict keyed like ``params``:
        ``W_proj`` ``(F, H)``, ``b_proj`` ``(H,)``, ``W_embed`` ``(vocab, W)``, ``Wx``, ``Wh``, ``b``,
        ``W_vocab`` ``(H, vocab)``, ``b_vocab`` ``(vocab,)``.  Or the bound method ``model.loss`` of an
        object whose ``params`` dict holds these (CS231n's ``CaptioningRNN``): it is called as
        ``model.loss(features, captions)`` with ``model.params`` replaced for the call and restored
        after; the sizes, the cell (``model.cell_type``) and ``null`` / ``start`` (``model._null``,
        ``model._start``) are read from the object when not given.
    cell : str
        ``"rnn"`` (or ``"rnn-tanh"``) or ``"lstm"``.
    vocab, F, W, H : int
        Vocabulary (at least 4), feature, word-vector and hidden sizes (defaults 10, 5, 3, 4).
    T, N : int
        Caption length (``captions`` is ``(N, T+1)``) and batch of the main case; cases with ``T = 1``
        and ``2`` and one with ``N = 1`` in which every input word occurs once also run.
    null, start : int
        The ids of ``<NULL>`` (padding, not scored; default 0) and ``<START>`` (default 1).
    args : tuple of str
        What ``fn`` takes, in order: ``params``, ``features``, ``captions``.

    Returns
    -------
    Verification
        ``localisation["part"]`` names the wrong part; ``path`` a named mistake (``mask``: the mask
        is left out of the backward, ``initial state``: dL/dh0 does not reach the projection,
        ``repeated words``: the embedding's gradient is not accumulated); ``step`` the first wrong
        step of the recurrent backward, when the case shows it.

    Examples
    --------
    >>> import symrnn.verify as V
    >>> from symrnn.verify.captioning import task_for
    >>> exact_loss = task_for("lstm", vocab=10, F=5, W=3, H=4).user_loss  # symrnn's, in CS231n's names
    >>> V.verify_captioning(exact_loss, "lstm").verdict()
    'RIGHT: lstm captioning code, 8 gradients exact (float64 error model, 4 cases)'
    """
    if not callable(fn):
        raise UserCodeError(f"fn must be the loss function (or a model's bound loss method), got "
                            f"{type(fn).__name__}.")
    check_roles(args, ROLES, need=None)  # a bound method reads the parameters from its object
    sizes = {"vocab": vocab, "F": F, "W": W, "H": H}
    owner = getattr(fn, "__self__", None)
    if owner is not None and not inspect.ismodule(owner) and isinstance(getattr(owner, "params", None), dict):
        cell = _from_owner(owner, cell, sizes)
        args = tuple(a for a in args if a != "params")
        null = getattr(owner, "_null", None) if null is None else null
        start = getattr(owner, "_start", None) if start is None else start
    elif "params" not in args:
        raise UnknownNameError(f"args={tuple(args)!r}: a function takes the parameters as 'params' (only a bound "
                               f"method of an object with a params dict reads them from the object).")
    else:
        owner = None
    for k, default in (("vocab", 10), ("F", 5), ("W", 3), ("H", 4)):
        sizes[k] = check_count(k, default if sizes[k] is None else sizes[k], 4 if k == "vocab" else 1)
    T, N = check_count("T", T), check_count("N", N)
    null, start = (0 if null is None else null), (1 if start is None else start)
    for name, value in (("null", null), ("start", start)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not 0 <= value < sizes["vocab"]:
            raise ShapeError(f"{name} must be a word id in 0..{sizes['vocab'] - 1}, got {value!r}.")
    if null == start:
        raise ShapeError(f"null and start are both {null}: <NULL> and <START> are different words.")
    cell_name = CELLS.get(cell if cell is not None else "rnn")
    if cell_name is None:
        raise UnknownNameError(f"cell={cell!r}: a captioning RNN's cell is one of {sorted(CELLS)}.")
    task = task_for(cell_name, **sizes)
    layout = CaptioningLayout(task)
    adapter = CaptioningLossFunction(task, layout, args, fn, owner)
    T_u = min(T, sizes["vocab"] - 2)
    plan = [(T, N, False, f"T={T}, N={N}"), (1, N, False, f"T=1, N={N}"), (2, N, False, f"T=2, N={N}"),
            (T_u, 1, True, f"T={T_u}, N=1, every input word once")]
    problems = [draw_captions(task, t, n, seed + k, label, scale, null, start, unique)
                for k, (t, n, unique, label) in enumerate(plan)]
    return verify_wired(adapter, problems, "captioning", locate, "every input word once")


_TASKS = {}


def task_for(cell="rnn-tanh", vocab=10, F=5, W=3, H=4):
    """The :class:`CaptioningTask` of these sizes (its model derived and compiled once per process)."""
    from ..models.model import Model

    cell = CELLS.get(cell, cell)
    key = (cell, vocab, F, W, H)
    if key not in _TASKS:
        _TASKS[key] = CaptioningTask(Model(builtin_cell(cell), D=W, H=H, K=vocab, reduction="batch-mean"), F)
    return _TASKS[key]
