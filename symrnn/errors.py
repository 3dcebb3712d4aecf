"""The exceptions symrnn raises.

Every error derives from :class:`SymRNNError`, and also from the builtin
exception a caller would catch for that kind of mistake (``ValueError`` for
bad values and shapes, ``TypeError`` for wrong kinds of objects), so code
written against NumPy conventions keeps working.
"""


class SymRNNError(Exception):
    """Base class of every error symrnn raises on purpose."""


class ShapeError(SymRNNError, ValueError):
    """An array does not have the shape the model expects."""


class NonFiniteError(SymRNNError, ValueError):
    """An input contains NaN or infinity."""


class UnknownNameError(SymRNNError, ValueError):
    """An activation, architecture, loss, cell or option that does not exist."""


class ParameterError(SymRNNError, ValueError):
    """A parameter dictionary is missing a name or has an extra one."""


class CellDefinitionError(SymRNNError, ValueError):
    """A cell definition that cannot work (named equation, reason, fix)."""


class DerivationTooLargeError(SymRNNError, ValueError):
    """A symbolic computation would exceed its size budget."""


class MissingRuleError(SymRNNError, TypeError):
    """An operation without a registered derivative or code rule."""


class UserCodeError(SymRNNError, RuntimeError):
    """The user's own code (a cell file, a function under verification) raised or could not be loaded."""


class UserCodeExit(UserCodeError):
    """The user's code did not run to the end: it called ``exit()``, ``sys.exit``, ``os._exit`` or
    raised ``KeyboardInterrupt``; ``where`` is ``file:line (in function)`` when known."""

    def __init__(self, message, where=""):
        super().__init__(message)
        self.where = where


class OutputPathError(SymRNNError, ValueError):
    """An output path that cannot be written (checked before any work is done)."""


class LatexNotFoundError(SymRNNError, RuntimeError):
    """A PDF was asked for but pdflatex is not installed (the .tex was written instead)."""

    def __init__(self, message, tex_path=None):
        super().__init__(message)
        self.tex_path = tex_path


class LatexError(SymRNNError, RuntimeError):
    """pdflatex failed; ``log_excerpt`` holds the error lines of its log."""

    def __init__(self, message, log_excerpt="", tex_path=None):
        super().__init__(message)
        self.log_excerpt = log_excerpt
        self.tex_path = tex_path


class BackendError(SymRNNError, ValueError):
    """An unknown backend of generated code, or the Numba backend without Numba installed."""


def warn_user(message: str, category=UserWarning) -> None:
    """``warnings.warn`` pointing at the first frame outside symrnn: the user's line, however deep the
    call that noticed the problem is."""
    import os
    import sys
    import warnings

    package = os.path.dirname(os.path.abspath(__file__)) + os.sep
    level, frame = 2, sys._getframe(1)  # stacklevel 2: the caller of this function
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(package):
        frame, level = frame.f_back, level + 1
    warnings.warn(message, category, stacklevel=level)
