"""The fused kernels compiled by Numba, from a file in symrnn's disk cache.

A block whose functions are all symrnn's own gets its kernels as a Python file in the cache
directory, ``<cache>/fused/k<sha256>.py``, compiled with Numba's ``cache=True`` (machine code per
argument type and CPU in ``__pycache__`` beside it).  The file is created once (a temporary file
linked into place: a second process never rewrites it, so Numba's index stays valid); a file
whose text is not the entry's is replaced and its Numba entries dropped.
"""
from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import inspect
import linecache
import os
import re
import sys
import tempfile
from pathlib import Path

import numpy as np

from .. import cache
from .functions import RULES
from .fused_print import own_scalar


def scalar_functions(names, numba):
    """The functions the kernels call that have no scalar source here (a user's, or one added to
    symrnn without one), compiled by Numba from their NumPy implementations."""
    out = {}
    for name in names:
        rule = RULES[name]
        if own_scalar(rule) is not None:
            continue
        implementation = rule.numpy
        if not inspect.isfunction(implementation):  # a ufunc or another callable: called from a function
            implementation = _calling(implementation)
        out[f"{name}__fn"] = numba.njit(error_model="numpy")(implementation)
    return out


def _calling(callable_):
    def implementation(a):
        return callable_(a)
    return implementation


def kernel_module(texts, key, numba):
    """The kernels as Numba dispatchers, from a file in the cache directory when the block has a key."""
    import math
    scalars = scalar_functions(texts["functions"], numba)
    source = texts["kernels"]
    names = re.findall(r"^def (\w+)\(", source, flags=re.MULTILINE)
    path = module_file(key, source) if key is not None else None
    if path is None:
        namespace = {"__name__": "symrnn_fused_dynamic", "math": math, "np": np, **scalars}
        filename = f"<symrnn-fused-kernels-{hashlib.sha256(source.encode()).hexdigest()[:12]}>"
        exec(compile(source, filename, "exec"), namespace)
        linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    else:
        name = f"symrnn_fused_{path.stem}"
        module = sys.modules.get(name)
        if module is None:  # Numba's cached code imports the module by name to rebuild its globals
            spec = importlib.util.spec_from_file_location(name, path)
            module = importlib.util.module_from_spec(spec)
            module.__dict__.update(scalars)
            spec.loader.exec_module(module)
            compile_ = numba.njit(cache=True, nogil=True, error_model="numpy")  # a model may run in threads
            for function in names:
                setattr(module, function, compile_(getattr(module, function)))
            sys.modules[name] = module
        return {n: getattr(module, n) for n in names}, path
    for n in names:
        if n not in scalars:
            namespace[n] = numba.njit(nogil=True, error_model="numpy")(namespace[n])
    return {n: namespace[n] for n in names}, path


def module_file(key, source):
    """The kernels' file in the cache directory, created once (None: the cache is off or unwritable)."""
    if not cache.enabled():
        return None
    digest = hashlib.sha256(f"{cache.environment()}\0{key}\0{source}".encode()).hexdigest()
    path = cache.directory() / "fused" / f"k{digest[:40]}.py"
    try:
        if path.is_file() and path.read_text(encoding="utf-8") == source:
            return path
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile("w", dir=path.parent, suffix=".tmp", delete=False,
                                         encoding="utf-8") as f:
            f.write(source)
            temporary = Path(f.name)
        os.chmod(temporary, 0o644)
        try:
            os.link(temporary, path)  # fails when another process made it first
        except FileExistsError:
            if path.read_text(encoding="utf-8") != source:  # a corrupt file: replace it
                os.replace(temporary, path)
                drop_numba_entries(path)
                return path
        finally:
            with contextlib.suppress(OSError):
                temporary.unlink()
        return path
    except OSError:
        return None


def drop_numba_entries(path):
    for entry in (path.parent / "__pycache__").glob(f"{path.stem}.*"):
        with contextlib.suppress(OSError):
            entry.unlink()
