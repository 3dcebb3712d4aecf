"""A pytest fixture, ``symrnn_verify``, so that an assignment's gradient test is one line::

    def test_rnn_backward(symrnn_verify):
        symrnn_verify.layer(rnn_forward, rnn_backward, cell="rnn-tanh", layout="cs231n")

Each method runs the corresponding :mod:`symrnn.verify` function with the same
arguments, fails the test with the full report when the code is wrong, and
returns the :class:`~symrnn.verify.Verification` otherwise.  Registered through
the ``pytest11`` entry point of the package.
"""
import pytest


class _Verifier:
    def _check(self, result):
        if not result.ok:
            pytest.fail(str(result), pytrace=False)
        return result

    def layer(self, forward, backward, **kwargs):
        from . import verify_layer
        return self._check(verify_layer(forward, backward, **kwargs))

    def step(self, step_forward, step_backward, **kwargs):
        from . import verify_step
        return self._check(verify_step(step_forward, step_backward, **kwargs))

    def loss(self, fn, **kwargs):
        from . import verify_loss
        return self._check(verify_loss(fn, **kwargs))

    def framework(self, target, **kwargs):
        from . import verify_framework
        return self._check(verify_framework(target, **kwargs))

    def layer_object(self, make, **kwargs):
        from . import verify_layer_object
        return self._check(verify_layer_object(make, **kwargs))


@pytest.fixture
def symrnn_verify():
    """Verify hand-written backprop code; the test fails with symrnn's report when it is wrong."""
    return _Verifier()
