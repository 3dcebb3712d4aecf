"""Running a cell over a large batch on every core: the batch cut into parts, one thread each.

The sequences of a batch do not meet inside a recurrence: row ``n`` of every state depends on row
``n`` of the inputs and the initial states only.  So a cell's generated forward and backward can
run on parts of the batch at once, each part in its own thread (NumPy's ufuncs and BLAS release
the GIL while they compute), and their results join exactly: the states, the input gradients and
the initial states' gradients side by side along the batch, the parameters' gradients summed
over the parts.  PyTorch splits its elementwise kernels over threads in the same spirit; the
generated code's ufuncs run on one core, so without this a machine's other cores sit idle.

Only the summation order of the parameters' gradients changes (one partial sum per part), a
rounding-level difference; the parts are fixed by the batch size and the number of threads.
A batch too small to gain (little work per step, few rows per part) runs in one piece.

Choosing the number of threads
------------------------------
``SYMRNN_THREADS`` (environment) or :func:`set_threads` (in code): the number of threads a cell
may use, by default the cores this process may run on; ``1`` runs every batch in one piece.
While the parts run, BLAS runs on one thread (threadpoolctl), so that the parts, not the
products inside them, share the cores.
"""
from __future__ import annotations

import contextlib
import os
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np

__all__ = ["MIN_ROWS", "MIN_WORK", "batch_parts", "in_parts", "join_along", "set_threads", "threads"]

MIN_ROWS = 4  # rows of the batch per part, at the least
MIN_WORK = 4096  # state entries per step per part (rows x the sum of the state sizes), at the least

_setting: list = []  # the number chosen by set_threads (empty: the environment or the cores)
_pool: list = []  # (threads, ThreadPoolExecutor), made on first use
_lock = threading.Lock()
_inside = threading.local()  # set in the pool's threads: a part never splits again
_blas = {"users": 0, "limit": None}


def _after_fork_in_child():
    """A forked child (a process pool's worker) has none of the parent's threads: a new pool."""
    global _lock
    _lock = threading.Lock()
    _pool.clear()
    _blas.update(users=0, limit=None)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def threads() -> int:
    """The number of threads a cell may use on one batch (see :func:`set_threads` for an example)."""
    if _setting:
        return _setting[0]
    text = os.environ.get("SYMRNN_THREADS", "").strip()
    if not text:
        return _cores()
    try:
        n = int(text)
    except ValueError:
        raise ValueError(f"SYMRNN_THREADS={text!r} is not a whole number; set it to the number of threads "
                         f"(1: none besides the caller's) or unset it (every core).") from None
    if n < 1:
        raise ValueError(f"SYMRNN_THREADS={n} must be 1 or more; unset it to use every core.")
    return n


def set_threads(n: int | None) -> None:
    """Let a cell run a large batch in ``n`` parts at once (``None``: the environment's
    ``SYMRNN_THREADS``, else every core this process may use; ``1``: one part).

    Parameters
    ----------
    n : int or None

    Examples
    --------
    >>> import symrnn as sr
    >>> sr.set_threads(2)
    >>> sr.threads()
    2
    >>> sr.set_threads(None)
    """
    if n is not None and (isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1):
        raise ValueError(f"set_threads takes a whole number of threads, 1 or more, or None (every core); got {n!r}.")
    _setting[:] = [] if n is None else [int(n)]


def batch_parts(N: int, width: int) -> list[slice] | None:
    """The parts of a batch of ``N`` rows whose states hold ``width`` entries per row, or None to
    run it in one piece (one thread allowed, too little work per part, or called from a part)."""
    if getattr(_inside, "part", False):
        return None
    n = min(threads(), N // MIN_ROWS, (N * width) // MIN_WORK)
    if n < 2:
        return None
    cuts = np.linspace(0, N, n + 1).round().astype(int)
    return [slice(int(a), int(b)) for a, b in zip(cuts[:-1], cuts[1:])]


def _run_part(job):
    _inside.part = True
    try:
        return job()
    finally:
        _inside.part = False


def in_parts(jobs: list) -> list:
    """The results of ``jobs`` (functions of no argument), run at once in the pool, BLAS on one
    thread meanwhile; the first exception of a job is raised after all have ended."""
    with _lock:
        want = max(threads(), len(jobs))
        if not _pool or _pool[0][0] < want:
            if _pool:
                _pool[0][1].shutdown(wait=False)
            _pool[:] = [(want, ThreadPoolExecutor(want, thread_name_prefix="symrnn-part"))]
        pool = _pool[0][1]
    with _one_blas_thread():
        futures = [pool.submit(_run_part, job) for job in jobs]
        errors = [f.exception() for f in futures]
    for e in errors:
        if e is not None:
            raise e
    return [f.result() for f in futures]


@contextlib.contextmanager
def _one_blas_thread():
    """BLAS on one thread while any batch runs in parts (counted: concurrent callers restore once)."""
    with _lock:
        if _blas["users"] == 0:
            _blas["limit"] = _blas_limit()
        _blas["users"] += 1
    try:
        yield
    finally:
        with _lock:
            _blas["users"] -= 1
            if _blas["users"] == 0 and _blas["limit"] is not None:
                _blas["limit"].restore_original_limits()
                _blas["limit"] = None


_controller: list = []


def _blas_limit():
    from threadpoolctl import ThreadpoolController
    if not _controller:
        _controller.append(ThreadpoolController())
    return _controller[0].limit(limits=1, user_api="blas")


def join_along(values: list, axis: int):
    """The parts' values side by side along ``axis`` (dicts key by key)."""
    if isinstance(values[0], dict):
        return {k: np.concatenate([v[k] for v in values], axis=axis) for k in values[0]}
    return np.concatenate(values, axis=axis)


def summed(values: list) -> dict:
    """The parts' parameter gradients (dicts of arrays), summed key by key."""
    total = {k: np.array(v, copy=True) for k, v in values[0].items()}
    for part in values[1:]:
        for k, v in part.items():
            total[k] += v
    return total


class JoinedCache(dict):
    """The caches of the parts as one: each array (time first, the batch on axis 1) joined when first read."""

    def __init__(self, parts):
        super().__init__()
        self.parts = parts

    def __missing__(self, key):
        value = self[key] = np.concatenate([np.asarray(p[key]) for p in self.parts], axis=1)
        return value

    def __contains__(self, key):
        return key in self.parts[0]

    def keys(self):
        return self.parts[0].keys()

    def __iter__(self):
        return iter(self.parts[0])

    def __len__(self):
        return len(self.parts[0])

    def items(self):
        return [(k, self[k]) for k in self]

    def values(self):
        return [self[k] for k in self]

    def get(self, key, default=None):
        return self[key] if key in self else default
