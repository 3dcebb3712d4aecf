"""The smallest failing case: fewest steps, then fewest examples, then smallest sizes, then
simplest values; saved as an ``.npz`` that ``symrnn verify --replay`` (or ``replay=``) runs again.

A candidate is kept when the user's code still returns a wrong gradient on it (the forward
right, some gradient outside its tolerance): the same judgement as the verification itself.
"""
from __future__ import annotations

import copy
import io
import json
import os
import tempfile
from dataclasses import replace

import numpy as np

from ..models.clipping import Clipping
from ..errors import ShapeError, SymRNNError
from ..fileio import write_atomic
from ..models.truncated import Truncation
from .assess import assess
from .problems import Problem, exact

MAX_CHECKS = 80  # candidates tried at most: shrinking stays a fraction of the verification's time


def shrink(adapter, problem, still_fails, rebuild=None):
    """``(adapter, problem)`` of the smallest case on which ``still_fails(adapter, problem)`` holds.

    ``rebuild(D=..., H=...)`` gives an adapter for other sizes (None: sizes stay)."""
    budget = [MAX_CHECKS]

    def fails(a, p):
        if budget[0] <= 0:
            return False
        budget[0] -= 1
        try:
            return still_fails(a, p)
        except (SymRNNError, ValueError, ArithmeticError):
            return False

    for t in range(1, problem.T):  # fewest steps
        candidate = prefix(adapter.model, problem, t)
        if candidate is not None and fails(adapter, candidate):
            problem = candidate
            break
    for n in range(1, problem.N):  # fewest examples
        candidate = _examples(problem, n)
        if fails(adapter, candidate):
            problem = candidate
            break
    if rebuild is not None:  # smallest sizes
        for size in ("D", "H"):
            for value in range(1, adapter.model.sizes[size]):
                try:
                    smaller = rebuild(**{**_sizes(adapter.model), size: value})
                except SymRNNError:  # a size the cell refuses (H not a multiple of mLSTM's head size)
                    continue
                if smaller is None:
                    break
                candidate = _resized(adapter.model, smaller.model, problem)
                if fails(smaller, candidate):
                    adapter, problem = smaller, candidate
                    break
    for digits in (1, 0):  # simplest values: one decimal, then integers
        for name in _value_names(problem):
            candidate = _rounded(problem, name, digits)
            if candidate is not None and fails(adapter, candidate):
                problem = candidate
    return adapter, problem


def shrinks_steps(model) -> bool:
    """Whether :func:`shrink` tries the prefixes of a case (the first t steps, for every t in turn):
    then the smallest case is the shortest failing prefix."""
    return model.architecture.name in ("many-to-many", "many-to-one")


def _sizes(model):
    return {"D": model.sizes["D"], "H": model.sizes["H"]}


def prefix(model, p, t):
    """The first ``t`` steps (an upstream gradient that arrived later moves to the last kept step)."""
    if not shrinks_steps(model):
        return None
    targets = p.targets
    if model.architecture.name == "many-to-many":
        targets = np.array(p.targets[:t])
        if model.loss_rule.name == "upstream" and not np.any(targets) and np.any(p.targets):
            last = max(i for i in range(p.T) if np.any(p.targets[i]))
            targets[-1] = p.targets[last]
    mask = None if p.mask is None else (p.mask[:t] if model.architecture.name == "many-to-many" else p.mask)
    return replace(p, x=p.x[:t], targets=targets, mask=mask)


def _examples(p, n):
    return replace(p, x=p.x[:, :n], h0={s: v[:, :n] if v.ndim == 3 else v[:n] for s, v in p.h0.items()},
                   targets=p.targets[:, :n], mask=None if p.mask is None else p.mask[:, :n],
                   final_grads=None if p.final_grads is None else {s: v[:n] for s, v in p.final_grads.items()})


def _resized(old, new, p):
    """The problem for a model of smaller sizes: every array's leading block."""
    def cut(a, shape):
        return np.array(a[tuple(slice(0, k) for k in shape)])

    params = {k: cut(p.params[k], shape) for k, shape in new.param_shapes.items()}
    T, N = p.x.shape[:2]
    x = cut(p.x, (T, N, new.sizes["D"]))
    h0 = {s: cut(v, (N, new.state_size(s))) for s, v in p.h0.items()}
    targets = p.targets
    if new.loss_rule.name == "upstream":
        targets = cut(p.targets, (p.targets.shape[0], N, new.state_size(new.out)))
    final = None if p.final_grads is None else {s: cut(v, (N, new.state_size(s))) for s, v in p.final_grads.items()}
    return replace(p, params=params, x=x, h0=h0,
                   targets=targets, final_grads=final)


def _value_names(p):
    names = ["x"] + [f"h0:{s}" for s in p.h0]
    if np.issubdtype(np.asarray(p.targets).dtype, np.floating):
        names.append("targets")
    return names + [f"param:{k}" for k in p.params]


def _rounded(p, name, digits):
    kind, _, key = name.partition(":")
    if kind == "x":
        new = np.round(p.x, digits)
        return None if np.array_equal(new, p.x) else replace(p, x=new)
    if kind == "targets":
        new = np.round(p.targets, digits)
        return None if np.array_equal(new, p.targets) else replace(p, targets=new)
    if kind == "h0":
        new = np.round(p.h0[key], digits)
        return None if np.array_equal(new, p.h0[key]) else replace(p, h0={**p.h0, key: new})
    new = np.round(p.params[key], digits)
    return None if np.array_equal(new, p.params[key]) else replace(p, params={**p.params, key: new})


# -- saving and replaying -------------------------------------------------------------------------
def save_case(problem, meta, path=None) -> str:
    """The case's arrays and its declared model (``meta``) in an ``.npz``, written atomically."""
    if path is None:
        handle, path = tempfile.mkstemp(prefix="symrnn-minimal-", suffix=".npz")
        os.close(handle)
    meta = dict(meta, label=problem.label,
                truncation=None if problem.truncation is None else [problem.truncation.k1, problem.truncation.k2],
                clip=None if problem.clip is None else [problem.clip.kind, problem.clip.threshold, problem.clip.eps,
                                                          problem.clip.states],
                states=sorted(problem.h0), final_states=sorted(problem.final_grads or {}))
    buffer = io.BytesIO()
    np.savez(buffer, meta=np.array(json.dumps(meta)), **problem.arrays())
    write_atomic(path, buffer.getvalue())
    return str(path)


def load_case(path):
    """``(meta, problem)`` from a file :func:`save_case` wrote."""
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: np.array(data[k]) for k in data.files}
    except FileNotFoundError:
        raise ShapeError(f"Cannot read the case file {str(path)!r}: there is no such file.") from None
    except Exception as exc:  # zipfile.BadZipFile, a pickle, a truncated file: not a case symrnn saved
        raise ShapeError(f"Cannot read the case file {str(path)!r}: it is not an .npz archive that symrnn verify "
                         f"saved ({type(exc).__name__}). Give the path its report printed.") from None
    if "meta" not in arrays:
        raise ShapeError(f"{str(path)!r} holds arrays but no declared model (no 'meta' entry): it is not a case "
                         f"symrnn verify saved for replay (an exception's arrays are saved for inspection only).")
    meta = _case_meta(path, arrays.pop("meta"))
    params = {k[len("param_"):]: v for k, v in arrays.items() if k.startswith("param_")}
    _check_case_arrays(path, meta, arrays)
    h0 = {s: arrays[f"state0_{s}"] for s in meta["states"]}
    final = {s: arrays[f"final_grad_{s}"] for s in meta["final_states"]} or None
    try:
        truncation = None if meta["truncation"] is None else Truncation(*meta["truncation"])
        clip = None if meta["clip"] is None else Clipping(*meta["clip"])
    except SymRNNError as exc:
        raise ShapeError(f"The case file {str(path)!r} declares a truncation or clipping symrnn cannot use ({exc}); "
                         f"it was not saved by symrnn verify, or was edited. Verify anew without --replay.") from None
    except TypeError:
        raise ShapeError(f"The case file {str(path)!r} has a malformed truncation {meta['truncation']!r} or clip "
                         f"{meta['clip']!r}; verify anew without --replay.") from None
    problem = Problem(f"replayed {meta['label']}", params, arrays["x"], h0, arrays["targets"], arrays.get("mask"),
                      final, truncation, clip)
    return meta, problem


#: what a saved case's meta must hold, and the type of each entry
_META_KEYS = {"label": str, "states": list, "final_states": list, "truncation": (list, type(None)),
              "clip": (list, type(None))}


def _case_meta(path, raw):
    """The declared model of a case file, checked: JSON, a dict, with every key :func:`save_case` writes."""
    where = f"The case file {str(path)!r}"
    try:
        meta = json.loads(str(raw))
    except ValueError:
        raise ShapeError(f"{where} has a 'meta' entry that is not JSON: it was not saved by symrnn verify, or was "
                         f"edited. Give the path its report printed, or verify anew without --replay.") from None
    if not isinstance(meta, dict):
        raise ShapeError(f"{where} has a 'meta' entry that is JSON but not an object ({type(meta).__name__}); "
                         f"verify anew without --replay.")
    missing = [k for k in _META_KEYS if k not in meta]
    if missing:
        raise ShapeError(f"{where} lacks {', '.join(map(repr, missing))} in its 'meta' entry; it was saved by another "
                         f"version of symrnn or edited. Verify anew without --replay.")
    wrong = [k for k, kind in _META_KEYS.items() if not isinstance(meta[k], kind)]
    if wrong or not all(isinstance(s, str) for s in meta["states"] + meta["final_states"]):
        raise ShapeError(f"{where} has 'meta' entries of the wrong kind ({', '.join(wrong) or 'states'}); verify "
                         f"anew without --replay.")
    return meta


def _check_case_arrays(path, meta, arrays):
    """Every array a case needs is there, with shapes that fit one another (a malformed file is the file's
    fault, not the code under test's)."""
    where = f"The case file {str(path)!r}"
    needed = ["x", "targets"] + [f"state0_{s}" for s in meta["states"]] + [f"final_grad_{s}" for s in
                                                                           meta["final_states"]]
    missing = [k for k in needed if k not in arrays]
    if missing:
        raise ShapeError(f"{where} lacks the arrays {', '.join(map(repr, missing))}; it is incomplete or was edited. "
                         f"Verify anew without --replay.")
    bad = [k for k, v in arrays.items() if not (np.issubdtype(v.dtype, np.number) or v.dtype == bool)]
    if bad:
        raise ShapeError(f"{where} holds non-numeric arrays ({', '.join(map(repr, bad))}); verify anew without "
                         f"--replay.")
    x = arrays["x"]
    if x.ndim != 3:
        raise ShapeError(f"{where}: its inputs 'x' have shape {x.shape}; a case's inputs are (T, N, D). The file "
                         f"is malformed; verify anew without --replay.")
    T, N = x.shape[:2]
    shapes = {"targets": (arrays["targets"].ndim in (2, 3) and arrays["targets"].shape[0] <= T
                          and arrays["targets"].shape[1:2] == (N,), "(T_out, N) or (T_out, N, size)")}
    for s in meta["states"]:
        a = arrays[f"state0_{s}"]
        shapes[f"state0_{s}"] = (a.ndim == 2 and a.shape[0] == N, "(N, size)")
    for s in meta["final_states"]:
        a = arrays[f"final_grad_{s}"]
        shapes[f"final_grad_{s}"] = (a.ndim == 2 and a.shape[0] == N, "(N, size)")
    if "mask" in arrays:
        m = arrays["mask"]
        shapes["mask"] = (m.ndim == 2 and m.shape[1] == N and m.shape[0] <= T, "(T_out, N)")
    for k, v in arrays.items():
        if k.startswith("param_"):
            shapes[k] = (v.ndim in (1, 2) and v.size > 0, "a vector or a matrix")
    wrong = [f"{k!r} {arrays[k].shape} (expected {want})" for k, (ok, want) in shapes.items() if not ok]
    if wrong:
        raise ShapeError(f"{where} holds arrays whose shapes do not fit its inputs x {x.shape} (T, N, D): "
                         f"{'; '.join(wrong)}. The file is malformed (not your code); verify anew without --replay.")


def rebuilder(adapter, make_model):
    """``rebuild(D=, H=)`` for :func:`shrink`: the adapter on a model of other sizes."""
    def rebuild(**sizes):
        new = copy.copy(adapter)
        new.model = make_model(**sizes)
        return new
    return rebuild


def judged_failure(adapter, problem):
    """``(problem, run, exact, dtype model, verdicts)`` when the user's code returns a wrong gradient
    on ``problem`` (its forward being right), else None."""
    run = adapter.run(problem, [])
    ex = exact(adapter.model, problem)
    fwd, dtype_model, verdicts = assess(adapter, problem, run, ex)
    if verdicts is None:
        return None
    return (problem, run, ex, dtype_model, verdicts) if any(not v.ok for v in verdicts) else None
