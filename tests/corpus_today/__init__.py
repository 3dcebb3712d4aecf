"""Hand-written NumPy layers of the recurrent cells of today, in symrnn's names (layout ``NATIVE``):
``forward(x, h0, params) -> (h, cache)`` and ``backward(dh, cache) -> (dx, dh0, grads)`` (SRU also
takes ``c0`` and returns ``dc0``), time-major ``(T, N, D)``, row vectors.  ``bug=`` plants one
mistake in the backward; :data:`BUGS` lists them per layer, :data:`CORRECT_VARIANTS` lists
backwards written another way that are right (they must pass)."""
from .layers import BUGS, CORRECT_VARIANTS, LAYERS, make  # noqa: F401
