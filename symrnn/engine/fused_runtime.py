"""Running a block's fused code: the driver functions over the compiled kernels, with the NumPy
code to fall back on when a kernel does not compile (a user's function Numba does not know) and a
second try when Numba's cache entry cannot be read."""
from __future__ import annotations

import contextlib
import linecache
import os
import re
import traceback
import warnings

import numpy as np

from .codegen import fresh
from .structure import fold_values, spread_values
from .fused_cache import drop_numba_entries


class FusedCode:
    """The fused forward and backward of one block, with the NumPy ones to fall back on.

    ``forward`` and ``backward`` have the signatures of the NumPy code's (see
    :class:`~symrnn.engine.codegen.BlockCode`).  A kernel Numba cannot compile (a user's
    function in Python Numba does not know) makes the block fall back to NumPy with a warning.
    """

    built = 0  # how many blocks were fused in this process (for tests and benchmarks)

    def __init__(self, block, texts, kernels, path):
        FusedCode.built += 1
        self.block, self.texts, self.path = block, texts, path
        self.kernels = kernels
        self.numpy_forward, self.numpy_backward = block.forward, block.backward
        self.failed = None
        namespace = {"np": np, "fresh": fresh, "spread__fn": spread_values, "fold__fn": fold_values, **kernels}
        self.fused_forward = _exec(texts["forward"], f"<symrnn-fused-{_safe(block.name)}-forward>", namespace,
                                   "forward")
        self.flushed = False
        self.forward = self._entry(self.fused_forward, self.numpy_forward)
        self.backward = self.numpy_backward  # a whole-loop forward comes alone
        if texts.get("backward") is not None:
            self.fused_backward = _exec(texts["backward"], f"<symrnn-fused-{_safe(block.name)}-backward>",
                                        namespace, "backward")
            self.backward = self._entry(self.fused_backward, self.numpy_backward)

    def _entry(self, fused, reference):
        """The function a caller gets: the fused one (its docstring shows its source and the
        kernels'), or the NumPy one after a kernel failed to compile."""

        def run(*args, **kwargs):
            return self._run(fused, reference, args, kwargs)
        run.__doc__ = f"{fused.__doc__}\n\nKernels:\n\n{self.texts['kernels']}"
        run.__name__ = fused.__name__
        return run

    def _run(self, fused, reference, args, kwargs):
        if self.failed is not None:
            return reference(*args, **kwargs)
        try:
            return fused(*args, **kwargs)
        except Exception as error:  # sorted below: a cache entry, a compile error, or the caller's
            from numba.core.errors import NumbaError
            if self.path is not None and not self.flushed and from_numba_cache(error):
                # an entry of Numba's cache that cannot be read: drop it, compile again
                self.flushed = True
                drop_numba_entries(self.path)
                for kernel in self.kernels.values():
                    with contextlib.suppress(Exception):
                        kernel._cache.flush()
                return self._run(fused, reference, args, kwargs)
            if not isinstance(error, NumbaError):
                raise
            self.failed = error
            warnings.warn(f"symrnn: the fused kernels of the block {self.block.name!r} do not compile with Numba "
                          f"({str(error).splitlines()[0]}); the block runs on NumPy.", RuntimeWarning, stacklevel=3)
            return reference(*args, **kwargs)


def from_numba_cache(error) -> bool:
    """True when ``error`` was raised while Numba read its cache (an entry cut short or foreign)."""
    return any(os.path.join("numba", "core", "caching.py") in frame.filename
               for frame in traceback.extract_tb(error.__traceback__))


def _safe(name):
    return re.sub(r"[^A-Za-z0-9_.+-]", "_", name)


def _exec(source, filename, namespace, name):
    namespace = dict(namespace)
    exec(compile(source, filename, "exec"), namespace)
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    function = namespace[name]
    function.__doc__ = f"Fused {name} (Numba kernels).\n\nGenerated source:\n\n{source}"
    return function
