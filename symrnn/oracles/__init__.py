"""Independent routes to the same numbers as the generated gradients.

* :mod:`symrnn.oracles.scalar`: the fully unrolled scalar graph, every weight
  entry a SymPy symbol, differentiated by SymPy one scalar equation at a time.
* :mod:`symrnn.oracles.finite_differences`: central differences in float64,
  and a high-precision mode (mpmath with Richardson extrapolation).
* PyTorch autograd, in the tests.
"""
from .finite_differences import central_differences, high_precision_differences
from .scalar import ScalarOracle

__all__ = ["ScalarOracle", "central_differences", "high_precision_differences"]
