"""symrnn: exact symbolic BPTT gradients of recurrent networks.

The package reads as its data flow, one floor per folder (``docs/architecture.md``):

* :mod:`symrnn.engine`: cell equations (:mod:`~symrnn.engine.cell`, :mod:`~symrnn.engine.cells`)
  -> symbolic BPTT (:mod:`~symrnn.engine.bptt`) -> generated NumPy code
  (:mod:`~symrnn.engine.codegen`), the unrolled graph and the step Jacobians;
* :mod:`symrnn.models`: every model a wiring of generated blocks on one tape
  (:mod:`~symrnn.models.protocol`, :mod:`~symrnn.models.model`, :mod:`~symrnn.models.wiring`,
  :mod:`~symrnn.models.seq2seq`) and the frameworks' weight layouts (:mod:`symrnn.models.layouts`);
* the uses: independent checks (:mod:`symrnn.oracles`, :mod:`symrnn.checks`), reports
  (:mod:`symrnn.report`), the verifier (:mod:`symrnn.verify`), gradient decay
  (:mod:`symrnn.decay`) and the command line (:mod:`symrnn.cli`).
"""
import importlib
import importlib.abc
import importlib.util
import sys as _sys
import warnings

from .engine.cell import Cell
from .engine.cells import BUILTIN_CELLS, builtin_cell, gru, lstm, rnn
from .engine.functions import exp, log, log_sigmoid, register_function, relu, sigmoid, softplus, step, tanh
from .engine.fused import backend, set_backend, using_backend
from .errors import (BackendError, CellDefinitionError, DerivationTooLargeError, MissingRuleError, NonFiniteError,
                     ParameterError, ShapeError, SymRNNError, UnknownNameError, UserCodeError)
from .models.model import Model
from .models.seq2seq import Seq2Seq
from .models.wiring import BidirectionalModel, StackedModel

__all__ = [
    "Cell", "Model", "StackedModel", "BidirectionalModel", "Seq2Seq", "BUILTIN_CELLS", "builtin_cell", "rnn", "lstm", "gru",
    "sigmoid", "tanh", "relu", "step", "exp", "log", "softplus", "log_sigmoid", "register_function",
    "SymRNNError", "ShapeError", "NonFiniteError", "UnknownNameError", "ParameterError",
    "CellDefinitionError", "DerivationTooLargeError", "MissingRuleError", "UserCodeError",
    "backend", "set_backend", "using_backend", "BackendError",
]
__version__ = "0.1.0"

if "IPython" in _sys.modules:  # in a notebook or IPython, derivations render as LaTeX: symrnn.report attaches it
    from . import report as _report  # noqa: F401


def _display_on_first_use():
    """``Derivation.show``/``latex``/``tex`` (and the notebook's ``_repr_latex_``) belong to the report
    layer, which attaches them when it is imported; until then each name is a stand-in that imports
    :mod:`symrnn.report` on first use and calls the real method, so a script needs no extra import
    and ``import symrnn`` stays as quick as it was."""
    from .engine.bptt import Derivation
    from .models.seq2seq_derivation import Seq2SeqDerivation

    def stand_in(cls, name):
        def method(self, *args, **kwargs):
            from . import report  # noqa: F401  (replaces the stand-ins by the real methods)
            if vars(cls)[name] is method:
                raise AttributeError(f"{cls.__name__}.{name} is not provided by symrnn.report")
            return getattr(self, name)(*args, **kwargs)
        method.__name__ = method.__qualname__ = name
        method.__doc__ = "See :mod:`symrnn.report.display` (imported on first use)."
        return method

    for cls, names in ((Derivation, ("show", "latex", "tex", "_repr_latex_")),
                       (Seq2SeqDerivation, ("show", "latex", "tex"))):
        for name in names:
            if name not in vars(cls):
                setattr(cls, name, stand_in(cls, name))


_display_on_first_use()

# -- the module paths before the engine/ and models/ folders ------------------------------------
_MOVED = {**{name: "engine" for name in ("symbols", "functions", "stored", "cell", "cells", "examples", "bptt",
                                           "graph", "codegen", "jacobians", "losses")},
          **{name: "models" for name in ("protocol", "tape", "model", "wiring", "seq2seq", "attention",
                                           "architectures", "truncated", "clipping", "layouts")}}


class _OldModulePaths(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """``import symrnn.model`` (a path from before the floors) still works, with a
    DeprecationWarning naming the new path; the module it gives reads through to the new one."""

    def find_spec(self, fullname, path=None, target=None):
        head, _, name = fullname.partition(".")
        if head == "symrnn" and name in _MOVED:
            return importlib.util.spec_from_loader(fullname, self)
        return None

    def create_module(self, spec):
        return None

    def exec_module(self, module):
        name = module.__name__.partition(".")[2]
        new = f"symrnn.{_MOVED[name]}.{name}"
        warnings.warn(f"{module.__name__} has moved to {new}; import it from there (the old path will go).",
                      DeprecationWarning, stacklevel=2)
        target = importlib.import_module(new)
        module.__dict__.update({k: v for k, v in vars(target).items()
                                if k not in ("__name__", "__spec__", "__loader__", "__path__", "__file__")})
        module.__getattr__ = lambda attribute: getattr(target, attribute)


_sys.meta_path.insert(0, _OldModulePaths())
