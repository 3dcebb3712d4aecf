"""The command that replays a saved minimal case: ``symrnn verify FILE:NAME ... --replay PATH``, or
the Python call when no command line can reach the user's functions."""
from __future__ import annotations

import inspect
import os
import shlex
import tempfile

from .signatures import forward_name


def replay_command(declared, path):
    """The one-line ``symrnn verify ... --replay`` for the user's functions (best effort: a function
    defined in a file, reachable by its name)."""
    meta = declared.meta
    fns = declared.functions
    main = fns[-1] if fns else None
    call = {"layer": "verify_layer", "step": "verify_step", "object": "verify_layer_object",
            "loss": "verify_loss"}[meta["mode"]]
    names = ", ".join(getattr(f, "__name__", "fn") for f in fns)
    if not declared.cli:  # a custom cell, layout or signature: only Python can declare it again
        return f"symrnn.verify.{call}({names}, <the same declaration>, replay={shown_path(path)!r})"
    where = _source_of(main)
    if where is None:  # defined in a notebook or a session: the Python call, runnable there
        more = "".join(f", {k}={meta[k]!r}" for k in ("loss", "reduction", "architecture") if k in meta)
        return (f"symrnn.verify.{call}({names}, cell={meta['cell']!r}, layout={meta['layout']!r}{more}, "
                f"replay={shown_path(path)!r})")
    target = f"{where}:{getattr(main, '__name__', 'FUNCTION')}"
    parts = ["symrnn", "verify", target, "--mode", meta["mode"], "--cell", str(meta["cell"]), "--layout",
             str(meta["layout"])]
    if meta["mode"] in ("layer", "step") and len(fns) == 2:
        fwd = getattr(fns[0], "__name__", None)
        if fwd and fwd != forward_name(getattr(main, "__name__", "")):
            parts += ["--forward", fwd]
    parts += ["--replay", shown_path(path)]
    return " ".join(shlex.quote(p) for p in parts)


def declared_cli_command(forward, backward):
    """``symrnn verify FILE:backward [--forward NAME]`` for a forward found by name, or None."""
    where = _source_of(backward)
    if where is None:
        return None
    parts = ["symrnn", "verify", f"{where}:{getattr(backward, '__name__', 'FUNCTION')}"]
    fwd = getattr(forward, "__name__", None)
    if fwd and fwd != forward_name(getattr(backward, "__name__", "")):
        parts += ["--forward", fwd]
    return parts


def _source_of(fn):
    """The file that defines ``fn``, relative to the working directory; None when there is no file a
    command line could import (a notebook cell's temporary file, an interactive session)."""
    try:
        source = inspect.getsourcefile(fn)
    except TypeError:
        return None
    if not source or source.startswith("<") or not os.path.isfile(source):
        return None
    if "ipykernel_" in source or getattr(fn, "__module__", None) == "__main__" and \
            os.path.realpath(source).startswith(os.path.realpath(tempfile.gettempdir()) + os.sep):
        return None  # a notebook's (or an interactive session's) temporary copy of a cell
    return os.path.relpath(source)


def shown_path(path):
    """``path`` relative to the working directory when it lies under it, else as it is."""
    relative = os.path.relpath(str(path))
    return str(path) if relative.startswith(os.pardir) else relative

