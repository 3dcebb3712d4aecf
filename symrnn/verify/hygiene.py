"""Calling user code: exceptions with the case that caused them, mutation of inputs,
non-finite outputs, nondeterminism and reused buffers."""
from __future__ import annotations

import contextlib
import copy
import os
import signal
import tempfile
import threading
import traceback
from dataclasses import dataclass

import numpy as np

from ..errors import UserCodeError, UserCodeExit


@dataclass
class Finding:
    kind: str  # "mutation", "nondeterminism", "reused-buffer"
    message: str
    severity: str = "warning"  # reported; the verdict comes from the forward and the gradients

    def to_json(self):
        return {"kind": self.kind, "message": self.message, "severity": self.severity}

    def __str__(self):
        return f"[{self.severity}] {self.kind}: {self.message}"


def _arrays_in(value, prefix):
    if isinstance(value, np.ndarray):
        yield prefix, value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from _arrays_in(v, f"{prefix}[{k!r}]")
    elif isinstance(value, (list, tuple)):
        for k, v in enumerate(value):
            yield from _arrays_in(v, f"{prefix}[{k}]")


def _shape(value):
    if isinstance(value, np.ndarray):
        return f"{value.shape}"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_shape(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list) and value and not isinstance(value[0], np.ndarray):
        return f"list of {len(value)}"
    return type(value).__name__


class _ProcessExit(BaseException):
    """``os._exit(code)`` called by user code while :func:`guarded` runs (it would end the process)."""

    def __init__(self, code):
        super().__init__(code)
        self.code = code


def _user_frame(tb):
    """``file:line (in function)`` of the innermost frame of ``tb`` outside symrnn and Python's own
    library (where the user's code called ``exit``), or ''."""
    own = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    stdlib = os.path.dirname(os.__file__)
    found = ""
    for frame in traceback.extract_tb(tb):
        name = os.path.abspath(frame.filename) if not frame.filename.startswith("<") else frame.filename
        if name.startswith((own, stdlib, "<frozen")):
            continue
        found = f"{os.path.relpath(name) if not name.startswith('<') else name}:{frame.lineno} (in {frame.name})"
    return found


@contextlib.contextmanager
def guarded(what):
    """Run user code so that nothing it does ends the verification silently.

    ``exit()``, ``sys.exit(n)``, ``os._exit(n)`` and a ``KeyboardInterrupt`` (or another
    ``BaseException``) raised by the code become :class:`~symrnn.errors.UserCodeExit` ("did not
    run to the end", with the line); ``os._exit`` is replaced while the code runs, so it cannot end
    the process.  A real Ctrl-C (SIGINT arriving meanwhile) still interrupts."""
    interrupted = []
    handler = None
    main = threading.current_thread() is threading.main_thread()
    if main:
        def on_sigint(signum, frame):
            interrupted.append(signum)
            raise KeyboardInterrupt
        try:
            handler = signal.signal(signal.SIGINT, on_sigint)
        except ValueError:  # not the main interpreter's thread
            main = False
    real_exit, pid = os._exit, os.getpid()

    def refuse(code=0):
        if os.getpid() != pid:  # a child the code forked (multiprocessing ends its children so): let it end
            real_exit(code)
        raise _ProcessExit(code)

    os._exit = refuse
    try:
        yield
    except (Exception, GeneratorExit):
        raise
    except BaseException as exc:  # SystemExit, KeyboardInterrupt, os._exit and the like
        if interrupted:
            raise
        if isinstance(exc, SystemExit):
            how = f"called sys.exit({exc.code!r})" if exc.code is not None else "called exit()"
        elif isinstance(exc, _ProcessExit):
            how = f"called os._exit({exc.code!r})"
        else:
            how = f"raised {type(exc).__name__}"
        where = _user_frame(exc.__traceback__)
        advice = "remove the raise" if how.startswith("raised") else "remove the call"
        advice += ", or guard it with if __name__ == '__main__':" if what.startswith("Importing") else ""
        raise UserCodeExit(f"{what} did not run to the end: it {how}" + (f" at {where}" if where else "")
                           + f"; the verifier needs it to return ({advice})", where=where) from None
    finally:
        os._exit = real_exit
        if main and handler is not None:
            signal.signal(signal.SIGINT, handler)


def save_case(problem, what) -> str:
    """The problem's arrays in an ``.npz`` under the temporary directory; its path."""
    handle, path = tempfile.mkstemp(prefix=f"symrnn-case-{what}-", suffix=".npz")
    os.close(handle)
    np.savez(path, **problem.arrays())
    return path


def call(fn, args, names, what, problem, findings, watch=True):
    """``fn(*args)``; exceptions become :class:`UserCodeError` with the case saved, and any
    change the call makes to the arrays it was given is a finding (the arrays are ours)."""
    args = [a if name == "cache" else copy.deepcopy(a) for a, name in zip(args, names)]  # ours stay intact
    before = [(label, array.copy()) for arg, name in zip(args, names) if watch
              for label, array in _arrays_in(arg, name)]
    try:
        with guarded(what):
            out = fn(*args)
    except UserCodeExit as exc:
        path = save_case(problem, what.split("(")[0].strip().replace(" ", "-"))
        raise UserCodeExit(f"{exc}\n  on the case {problem.label!r} (T={problem.T}, N={problem.N}); its arrays are "
                           f"saved in {path}", where=exc.where) from None
    except Exception as exc:
        path = save_case(problem, what.split("(")[0].strip().replace(" ", "-"))
        shapes = ", ".join(f"{name} {_shape(arg)}" for arg, name in zip(args, names) if name != "cache")
        where = _user_frame(exc.__traceback__)
        raise UserCodeError(
            f"{what} raised {type(exc).__name__}: {exc}" + (f" at {where}" if where else "")
            + f"\n  called with {shapes}\n  on the case {problem.label!r} "
            f"(T={problem.T}, N={problem.N}); its arrays are saved in {path}") from exc
    if watch:
        after = {label: array for arg, name in zip(args, names) for label, array in _arrays_in(arg, name)}
        changed = [label for label, old in before
                   if label in after and (after[label].shape != old.shape
                                          or not np.array_equal(after[label], old, equal_nan=True))]
        if changed:
            findings.append(Finding("mutation", f"{what} modified its argument(s) {', '.join(changed)} in place; "
                                                f"a caller reusing them gets wrong values (copy before writing)."))
    return out


def snapshot(value):
    """A deep copy of user outputs (to detect buffers that the next call overwrites)."""
    return copy.deepcopy(value)


def compare_runs(first, second, first_copy, what, findings):
    """Nondeterminism (two calls on copies differ) and reused buffers (the first call's arrays
    changed when the second call ran)."""
    for (label, a), (_, b), (_, a0) in zip(_arrays_in(first, "out"), _arrays_in(second, "out"),
                                           _arrays_in(first_copy, "out")):
        if not np.array_equal(a0, b, equal_nan=True):
            findings.append(Finding("nondeterminism", f"{what}: two calls on the same inputs returned different "
                                                      f"{label} (max difference {np.max(np.abs(a0 - b)):.3e})."))
        elif np.shares_memory(a, b) or not np.array_equal(a, a0, equal_nan=True):
            findings.append(Finding("reused-buffer", f"{what} returns {label} in an array that the next call "
                                                     f"overwrites; copy it before calling again."))
