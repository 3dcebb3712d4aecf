"""A user's Python: a cell factory, a function or a module named on the command line.

``file.py:function`` or ``package.module:function``; the file's top-level code runs guarded (an
``exit()`` there is reported, never ends the process), and what goes wrong becomes an
:class:`~symrnn.errors.UnknownNameError` (nothing there) or a :class:`~symrnn.errors.UserCodeError`
(the user's code failed), naming the file and the line.
"""
from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path

from .engine.cell import Cell
from .engine.cells import builtin_cell
from .errors import SymRNNError, UnknownNameError, UserCodeError


def load_cell(spec: str) -> Cell:
    """A built-in cell by name, or a user's cell from ``file.py:function`` / ``module:function``.

    Whatever goes wrong in the user's file (a syntax error, an exception at import,
    a factory that needs arguments or raises) becomes a :class:`UserCodeError` that
    names the file and the original error.
    """
    if ":" not in spec:
        return builtin_cell(spec)
    where, _, function = spec.rpartition(":")
    module = module_of(where, f"the cell {spec!r}", f" for the cell {spec!r}")
    factory = getattr(module, function, None)
    if factory is None:
        raise UnknownNameError(f"{where!r} has no function {function!r}.")
    from .verify.hygiene import guarded

    try:
        with guarded(f"{function}() from {where!r}"):
            cell = factory() if callable(factory) else factory
    except SymRNNError:
        raise
    except TypeError as exc:
        raise UserCodeError(
            f"Calling {function}() from {where!r} failed: {exc}. The function must take no arguments and "
            f"return a symrnn.Cell (wrap a factory with arguments: def my_cell(): return factory(...)).") from exc
    except Exception as exc:
        raise UserCodeError(f"{function}() from {where!r} raised {type(exc).__name__}: {exc}") from exc
    if not isinstance(cell, Cell):
        raise UnknownNameError(f"{spec!r} gave a {type(cell).__name__}, not a symrnn.Cell.")
    return cell


def import_guarded(name):
    """``importlib.import_module(name)``, its top-level code unable to end the process."""
    from .verify.hygiene import guarded

    with guarded(f"Importing {name}"):
        return importlib.import_module(name)


def load_file(where: str, what: str):
    """Import a user's Python file as a module; errors name the file and the line."""
    path = Path(where)
    if not path.is_file():
        raise UnknownNameError(f"No file {where!r} for {what}.")
    directory = str(path.resolve().parent)
    if directory not in sys.path:  # the file may import its neighbours (from rnn_layers import ...)
        sys.path.insert(0, directory)
    module_spec = importlib.util.spec_from_file_location(f"symrnn_user_{path.stem}", path)
    module = importlib.util.module_from_spec(module_spec)
    from .verify.hygiene import guarded

    try:
        with guarded(f"Importing {where}"):
            module_spec.loader.exec_module(module)
    except UserCodeError:
        raise
    except SyntaxError as exc:
        raise UserCodeError(f"{where} has a syntax error at line {exc.lineno}: {exc.msg}.") from exc
    except Exception as exc:
        raise UserCodeError(f"Importing {where} raised {type(exc).__name__}: {exc}") from exc
    return module


def load_function(spec: str):
    """``(module, function)`` from ``file.py:function`` or ``package.module:function``."""
    if ":" not in spec:
        raise UnknownNameError(f"{spec!r}: give file.py:function or package.module:function.")
    where, _, name = spec.rpartition(":")
    module = module_of(where, spec)
    function = attribute(module, name)
    if function is None:
        raise UnknownNameError(f"{where!r} has no {name!r}.")
    return module, function


def module_of(where, what, purpose=""):
    """The module of ``file.py`` or ``package.module``; what goes wrong importing it is a
    :class:`UnknownNameError` (not found) or a :class:`UserCodeError` (its code failed)."""
    if where.endswith(".py"):
        return load_file(where, what=what)
    try:
        return import_guarded(where)
    except ImportError as exc:
        raise UnknownNameError(f"Cannot import {where!r}{purpose}: {exc}.") from None
    except UserCodeError:
        raise
    except Exception as exc:
        raise UserCodeError(f"Importing {where!r} raised {type(exc).__name__}: {exc}") from exc


def attribute(module, dotted):
    """``module.a.b`` for ``"a.b"`` (an object's method: ``net.backward``), or None."""
    value = module
    for part in dotted.split("."):
        value = getattr(value, part, None)
        if value is None:
            return None
    return value
