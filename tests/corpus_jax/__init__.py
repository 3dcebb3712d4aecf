"""Hand-written JAX backward rules (``jax.custom_vjp``) for RNN, LSTM and GRU, each correct and with
planted bugs, for :mod:`symrnn.verify.frameworks` (``tests/test_verify_frameworks.py``).

Each cell module has ``make(bug=None, chunk=3)`` returning the custom_vjp function and ``BUGS`` (as
``tests/corpus_torch``).  PyTorch's weight names and equations, time-major, ``h0`` of shape ``(N, H)``;
the backward loops over steps in chunks of ``chunk`` as a fused kernel would.
"""
