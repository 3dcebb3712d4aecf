"""Generated code kept on disk, so that a new process skips the symbolic work another one did.

An entry is the output of a pure function of symbolic input (a block's generated source, a
mutant's coefficients): its *key* is that input written out in full (``sympy.srepr`` text and
the options), and it is stored in a file named by the SHA-256 of the key together with what
the output depends on besides the key: symrnn's version and its own source, and the versions
of SymPy, NumPy and Python.  An edited symrnn, an upgraded SymPy or another Python never reads
an entry written by the old one.

The directory is ``$SYMRNN_CACHE_DIR``, else ``$XDG_CACHE_HOME/symrnn``, else
``~/.cache/symrnn``.  ``SYMRNN_NO_CACHE=1`` (or ``symrnn verify --no-cache``, or
:func:`disabled`) bypasses it: nothing is read or written.

Trust: an entry holds its key in full and the SHA-256 of its value; a reader uses it only when
both match and it parses, and otherwise builds the value again and writes it anew.  A file cut
short, edited or left by another version is never trusted.  Two processes writing one entry at
once each put a complete file in place by ``os.replace`` (the last one stays; both hold the
same value).  A directory that cannot be written turns the cache off for the process without
an error: the cache only saves time.
"""
from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import sys
from pathlib import Path

from .fileio import write_atomic

_OFF = []  # a stack of disabled() contexts


def directory() -> Path:
    """Where entries live (see the module docstring for the order of the settings)."""
    if os.environ.get("SYMRNN_CACHE_DIR"):
        return Path(os.environ["SYMRNN_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "symrnn"


def enabled() -> bool:
    """False inside :func:`disabled` or when ``SYMRNN_NO_CACHE`` is set to anything but ``0``/empty."""
    return not _OFF and os.environ.get("SYMRNN_NO_CACHE", "").strip() in ("", "0")


@contextlib.contextmanager
def disabled():
    """Within the block nothing is read from or written to the cache."""
    _OFF.append(True)
    try:
        yield
    finally:
        _OFF.pop()


@functools.lru_cache(maxsize=1)
def _environment() -> str:
    """What every entry depends on besides its key: versions, and symrnn's own source files."""
    import numpy
    import sympy

    from . import __version__

    digest = hashlib.sha256()
    package = Path(__file__).resolve().parent
    for path in sorted(package.rglob("*.py")):
        digest.update(str(path.relative_to(package)).encode())
        digest.update(path.read_bytes())
    return (f"symrnn {__version__} source {digest.hexdigest()[:16]} sympy {sympy.__version__} "
            f"numpy {numpy.__version__} python {sys.version_info[0]}.{sys.version_info[1]}")


def environment() -> str:
    """What every entry depends on besides its key (symrnn's version and source hash, SymPy's,
    NumPy's and Python's versions), for files kept beside the entries (:mod:`symrnn.engine.fused`)."""
    return _environment()


def _path(kind: str, key: str) -> Path:
    name = hashlib.sha256(f"{kind}\0{_environment()}\0{key}".encode()).hexdigest()
    return directory() / kind / f"{name}.json"


def _checksum(value) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()


def _read(path: Path, kind: str, key: str):
    """The entry's value, or None when it is missing, unreadable or does not match."""
    try:
        entry = json.loads(path.read_text(encoding="utf-8"))
        if (entry["kind"], entry["key"], entry["environment"]) != (kind, key, _environment()):
            return None
        return entry["value"] if entry["sha256"] == _checksum(entry["value"]) else None
    except (OSError, ValueError, KeyError, TypeError, UnicodeDecodeError):
        return None


def _write(path: Path, kind: str, key: str, value) -> None:
    entry = {"kind": kind, "key": key, "environment": _environment(), "sha256": _checksum(value),
             "value": value}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, json.dumps(entry))
    except OSError:
        _OFF.append(True)  # unwritable: no cache for this process (the work is done anyway)


def get_or_build(kind: str, key: str, build):
    """``build()``'s value (JSON data: str, numbers, lists, dicts), from the cache when an entry
    for ``(kind, key)`` exists and is intact, else built and stored."""
    if not enabled():
        return build()
    path = _path(kind, key)
    value = _read(path, kind, key)
    if value is None:
        value = build()
        if enabled():
            _write(path, kind, key, value)
    return value


def clear() -> int:
    """Remove every entry (of every version); the number of files removed."""
    removed = 0
    root = directory()
    for path in root.glob("*/*.json") if root.is_dir() else ():
        with contextlib.suppress(OSError):
            path.unlink()
            removed += 1
    return removed
