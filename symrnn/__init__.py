"""symrnn: exact symbolic BPTT gradients of recurrent networks.

The data flow, one module each: cell equations (:mod:`symrnn.cell`,
:mod:`symrnn.cells`) -> symbolic BPTT (:mod:`symrnn.bptt`) -> unrolled graph
(:mod:`symrnn.graph`) -> generated NumPy code (:mod:`symrnn.codegen`) ->
model (:mod:`symrnn.model`) -> independent checks (:mod:`symrnn.oracles`).
"""
from .cell import Cell
from .cells import BUILTIN_CELLS, builtin_cell, gru, lstm, rnn
from .errors import (CellDefinitionError, DerivationTooLargeError, MissingRuleError, NonFiniteError,
                     ParameterError, ShapeError, SymRNNError, UnknownNameError, UserCodeError)
from .functions import exp, log, register_function, relu, sigmoid, step, tanh
from .model import Model
from .wiring import BidirectionalModel, StackedModel
from .seq2seq import Seq2Seq

__all__ = [
    "Cell", "Model", "StackedModel", "BidirectionalModel", "Seq2Seq", "BUILTIN_CELLS", "builtin_cell", "rnn", "lstm", "gru",
    "sigmoid", "tanh", "relu", "step", "exp", "log", "register_function",
    "SymRNNError", "ShapeError", "NonFiniteError", "UnknownNameError", "ParameterError",
    "CellDefinitionError", "DerivationTooLargeError", "MissingRuleError", "UserCodeError",
]
__version__ = "0.1.0"

import sys as _sys

if "IPython" in _sys.modules:  # in a notebook or IPython, derivations render as LaTeX: symrnn.report attaches it
    from . import report as _report  # noqa: F401
