"""The fused backend: generated step code compiled by Numba, one kernel per step's elementwise work.

The NumPy code of :mod:`symrnn.engine.codegen` runs some 25 ufunc calls per time step over small
arrays; the time goes to call overhead and memory traffic.  This backend writes the same step
from the same symbolic terms (the forward equations, and the backward coefficients, ``cse``
factors and adjoint sums that :class:`~symrnn.engine.backward_code.BackwardWriter` prepares), but
prints every elementwise statement of a step as scalar code inside one loop over batch and
units, compiled by Numba: one kernel per forward step and one per reverse step, split only
where a matrix product must run in between (the products stay NumPy/BLAS calls, as do the
products over all steps before and after the loop).  A user's cell gets kernels too; a
function the user registered is compiled from its NumPy implementation (a rule Numba cannot
compile makes the block run on NumPy, with a warning).

Choosing the backend
--------------------
``SYMRNN_BACKEND`` (environment) or :func:`set_backend` / :func:`using_backend` (in code):

``"numpy"`` (the default)
    The generated NumPy code: the reference, no compiler needed.
``"numba"``
    The fused kernels; an error (:class:`~symrnn.errors.BackendError`) if Numba is not
    installed (``pip install symrnn[fast]``).
``"auto"``
    ``"numba"`` where Numba imports, else ``"numpy"``.

A block (a :class:`~symrnn.engine.codegen.BlockCode`) takes the backend in force when it is
built: a model built under ``using_backend("numba")`` keeps its kernels afterwards.

Compile once
------------
A block whose functions are all symrnn's own is written to the disk cache of
:mod:`symrnn.cache`: the generated sources as an entry (kind ``fused``, keyed by the block's
equations like the NumPy code, under symrnn's version and source hash), and the kernels as a
Python file next to it, ``<cache>/fused/<sha256>.py``, compiled with Numba's ``cache=True``:
Numba keeps the machine code per argument type (float64 or float32 arrays ...) and CPU in
``__pycache__`` beside the file.  The file is created once (written to a temporary file and
linked into place, so a second process never rewrites it and Numba's index stays valid); a
file whose text is not the entry's is replaced.  An entry Numba cannot read (cut short, of
another Numba) is flushed and compiled again on the first call.
"""
from __future__ import annotations

import contextlib
import os
import threading

from .. import cache
from ..errors import BackendError
from .fused_cache import kernel_module
from .fused_print import sources
from .fused_runtime import FusedCode

__all__ = ["BACKENDS", "FusedCode", "backend", "chosen", "fuse", "linear_algebra_available", "numba_available",
           "set_backend", "sources", "using_backend"]

BACKENDS = ("numpy", "numba", "auto")
_chosen: list = []  # a stack: set_backend replaces the bottom, using_backend pushes
_lock = threading.Lock()


# -- choosing the backend ----------------------------------------------------------------
def _check_name(name):
    if name not in BACKENDS:
        raise BackendError(f"Unknown backend {name!r}; expected one of {list(BACKENDS)} (SYMRNN_BACKEND or "
                           f"symrnn.set_backend).")
    return name


def set_backend(name: str) -> None:
    """Choose the backend of generated code for blocks built from now on.

    Parameters
    ----------
    name : {"numpy", "numba", "auto"}
        ``"numpy"``: the generated NumPy code (the default and the reference); ``"numba"``: the
        fused kernels (needs ``pip install symrnn[fast]``); ``"auto"``: Numba where installed.

    Examples
    --------
    >>> import symrnn as sr
    >>> sr.set_backend("numpy")
    >>> sr.backend()
    'numpy'
    """
    _check_name(name)
    if _chosen:
        _chosen[0] = name
    else:
        _chosen.append(name)


@contextlib.contextmanager
def using_backend(name: str):
    """Within the block, blocks are built with the backend ``name`` (see :func:`set_backend`).

    A model builds its blocks at ``compile()`` or at its first call: build it inside the block
    (a model built inside and first called outside runs on the backend in force outside).

    Parameters
    ----------
    name : {"numpy", "numba", "auto"}
        The backend, as for :func:`set_backend`.

    Examples
    --------
    >>> import symrnn as sr
    >>> with sr.using_backend("numpy"):
    ...     model = sr.Model("gru", D=2, H=3, K=2).compile()
    >>> model.cell_code.backend
    'numpy'
    """
    _check_name(name)
    if not _chosen:
        _chosen.append(None)
    _chosen.append(name)
    try:
        yield
    finally:
        _chosen.pop()


def chosen() -> str:
    """The backend asked for: the innermost :func:`using_backend`, else :func:`set_backend`'s, else
    ``$SYMRNN_BACKEND``, else ``"numpy"``."""
    for name in reversed(_chosen):
        if name is not None:
            return name
    return _check_name(os.environ.get("SYMRNN_BACKEND", "").strip().lower() or "numpy")


def numba_available() -> bool:
    """True when Numba imports."""
    try:
        import numba  # noqa: F401
    except ImportError:
        return False
    return True


def linear_algebra_available() -> bool:
    """True when Numba can compile ``np.dot`` and ``np.linalg`` (it calls SciPy's BLAS and LAPACK):
    the whole-loop forward and the decay study's compiled loops need it."""
    import importlib.util
    return importlib.util.find_spec("scipy") is not None


def backend() -> str:
    """The backend blocks built now get: ``"numpy"`` or ``"numba"`` (``"auto"`` resolved).

    Raises
    ------
    BackendError
        ``"numba"`` was chosen and Numba is not installed.
    """
    name = chosen()
    if name == "auto":
        return "numba" if numba_available() else "numpy"
    if name == "numba" and not numba_available():
        raise BackendError("The numba backend needs Numba: pip install symrnn[fast] (or choose the backend "
                           "'numpy' or 'auto').")
    return name


def fuse(block, whole_loop=False) -> FusedCode | None:
    """The fused code of ``block`` when the backend in force is Numba, else None.

    Parameters
    ----------
    block : symrnn.engine.codegen.BlockCode
    whole_loop : bool
        Compile the forward's whole loop over time as one function (its products written as
        loops; no backward): for small arrays (one sequence, a few dozen units), where a Python
        step per time step costs more than the step.  The decay study uses it.

    Returns
    -------
    FusedCode or None
        None under the NumPy backend, or for a block the fused writer does not handle.
    """
    if backend() != "numba" or (whole_loop and not linear_algebra_available()):
        return None
    import numba
    key = block._cache_key()
    kind = "fused-loop" if whole_loop else "fused"
    if key is None:
        texts = sources(block, whole_loop)
    else:
        texts = cache.get_or_build(kind, key, lambda: sources(block, whole_loop) or {})
    if not texts:
        return None
    with _lock:
        kernels, path = kernel_module(texts, key, numba)
    return FusedCode(block, texts, kernels, path)
