"""Hand-written PyTorch backward passes for RNN, LSTM and GRU (``torch.autograd.Function``, a
``torch.library`` custom operator, an ``nn.Module``), each correct and with planted bugs, for
:mod:`symrnn.verify.frameworks` (``tests/test_verify_frameworks.py``).

Each cell module has ``make(bug=None, chunk=3)`` returning a Function class and ``BUGS``: the
planted mistakes, each with what the verifier must say about it.  Written from the equations of
PyTorch's ``nn.RNN``/``nn.LSTM``/``nn.GRU`` documentation, time-major, ``h0`` of shape ``(N, H)``.
"""
