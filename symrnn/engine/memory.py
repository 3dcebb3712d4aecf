"""Freed memory kept for reuse while generated code runs (glibc's ``malloc``, Linux).

The generated NumPy code makes its large per-step values (a spread of S6's step size over its
``(N, H x 16)`` state, 512 KiB at N=32, H=128) as NumPy temporaries, and a gradient returns new
arrays.  glibc hands such blocks to the system when they are freed: a block of 128 KiB or more
is mapped and unmapped on its own until the process has freed a block that size (its *dynamic
threshold*), and the top of the heap is given back whenever more than twice that threshold lies
free there.  The next call then takes a page fault for every 4 KiB page it touches again: 5,000
faults per S6 gradient (14% of its time on the benchmark machine, measured by process time), 1,600
per rnn-tanh gradient (18%).  PyTorch keeps no such cost.

:func:`keep_freed_memory` sets the two thresholds to the values glibc's own dynamic rule reaches
once a 32 MiB block has been freed (``M_MMAP_THRESHOLD`` 32 MiB, its largest, and
``M_TRIM_THRESHOLD`` 64 MiB, twice that), so that freed blocks are reused from the first call on.
It is called when a model first makes its workspace (:class:`~symrnn.engine.codegen.Workspace`),
once per process; ``SYMRNN_MALLOC=system`` leaves the allocator as it is.  The settings are the
process's (glibc has one allocator), which is why they are no stronger than glibc's own: blocks
of 32 MiB and more are still mapped, and more than 64 MiB free at the top of the heap is still
given back.  Elsewhere than glibc nothing is changed.
"""
from __future__ import annotations

import ctypes
import functools
import os
import sys

#: glibc's ``mallopt`` parameters (malloc.h)
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
MMAP_THRESHOLD = 32 * 1024 * 1024
TRIM_THRESHOLD = 2 * MMAP_THRESHOLD


@functools.cache
def keep_freed_memory() -> bool:
    """Set glibc's thresholds once (see the module's docstring); True when they are set now or were
    before, False where there is no glibc or ``SYMRNN_MALLOC=system``."""
    if os.environ.get("SYMRNN_MALLOC", "").strip().lower() == "system" or not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None)
        if not hasattr(libc, "gnu_get_libc_version"):  # another C library (musl): its mallopt means other things
            return False
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
