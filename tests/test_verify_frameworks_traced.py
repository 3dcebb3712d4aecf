"""Framework code whose cell is no built-in one: the cell is traced from the framework's own graph of
one step (torch.export's Core ATen graph; JAX's jaxpr), printed, and the backward judged against its
exact gradient (tests/corpus_torch/traced.py, tests/corpus_jax/traced.py: an LSTM without the output
tanh and a leaky RNN, correct and with planted bugs).  Code that cannot be traced is refused with the
line that stopped the tracing and how to declare the cell instead."""
import os
import sys

import pytest

torch = pytest.importorskip("torch")

sys.path.insert(0, os.path.dirname(__file__))
from corpus_torch import traced as torch_traced
from test_verify_frameworks import check_localised

from symrnn.verify import verify_framework
from symrnn.verify.trace import TracingError

EQUATIONS = {"lstm-no-tanh": ("c[t] = c[t-1]*g1[t] + g0[t]*g2[t]", "h[t] = c[t]*g3[t]"),
             "leaky": ("a0[t] = tanh(b + U @ x[t] + W @ h[t-1])", "h[t] = 0.3*a0[t] + 0.7*h[t-1]")}


@pytest.mark.parametrize("cell", sorted(torch_traced.MAKE))
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_a_traced_torch_cell_is_printed_and_the_correct_backward_passes(cell, dtype):
    result = verify_framework(torch_traced.MAKE[cell](), None, dtype=dtype)
    assert result.ok and result.dtype_model.name == dtype, str(result)
    assert "traced from torch.export's graph (Core ATen) of one step" in result.found
    for line in EQUATIONS[cell]:
        assert line in result.found and line in str(result)


@pytest.mark.parametrize("cell,bug", [(c, b) for c in sorted(torch_traced.BUGS) for b in torch_traced.BUGS[c]])
def test_every_planted_bug_in_a_traced_torch_cell_is_caught_and_localised(cell, bug):
    check_localised(verify_framework(torch_traced.MAKE[cell](bug), None), torch_traced.BUGS[cell][bug])


def test_the_traced_cells_exact_gradient_agrees_with_torch_autograd():
    """An independent route: autograd through the plain forward (no hand-written backward) passes at
    float64's rounding against the gradient derived from the traced cell."""
    plain = torch_traced.lstm_no_tanh().forward

    class Context:
        def save_for_backward(self, *tensors):
            pass

    class Through(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x, h0, c0, weight_ih, weight_hh, bias_ih, bias_hh):
            ctx.save_for_backward(x, h0, c0, weight_ih, weight_hh, bias_ih, bias_hh)
            return plain(Context(), x, h0, c0, weight_ih, weight_hh, bias_ih, bias_hh)

        @staticmethod
        def backward(ctx, dh, dc):
            with torch.enable_grad():
                inputs = [t.detach().requires_grad_() for t in ctx.saved_tensors]
                hs, c = plain(Context(), *inputs)
                return torch.autograd.grad((hs, c), inputs, (dh, dc))

    result = verify_framework(Through, None)
    assert result.ok and "traced from torch.export" in result.found, str(result)
    assert max(g.max_abs_error / max(g.exact_norm, 1e-300) for g in result.gradients) < 1e-12


def test_code_that_cannot_be_traced_names_its_line_and_how_to_declare_the_cell():
    class Branchy(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x, h0, weight_ih, weight_hh, bias_ih, bias_hh):
            h, hs = h0, []
            for t in range(x.shape[0]):
                a = x[t] @ weight_ih.T + bias_ih + h @ weight_hh.T + bias_hh
                h = torch.where(a > 0, a, 0.1 * a)  # a leaky ReLU written as a branch on values
                hs.append(h)
            return torch.stack(hs)

    with pytest.raises(TracingError) as caught:
        verify_framework(Branchy, None)
    message = str(caught.value)
    assert "test_verify_frameworks_traced.py" in message and "torch.where(a > 0" in message
    assert "needs the numbers" in message and "Declare the cell instead" in message and "cell=symrnn.Cell" in message


# -- JAX ---------------------------------------------------------------------------------------------
def _jax_traced():
    pytest.importorskip("jax")
    from corpus_jax import traced

    return traced


def test_a_traced_jax_cell_is_printed_and_the_correct_backward_passes():
    """(The planted bugs of the JAX corpus are the slow tests below: XLA compiles per shape.)"""
    right = verify_framework(_jax_traced().leaky(), None, lengths=())
    assert right.ok and "traced from its jaxpr of one step" in right.found, str(right)
    assert EQUATIONS["leaky"][1] in right.found


def test_jax_code_that_cannot_be_traced_names_its_line():
    jax = pytest.importorskip("jax")
    import jax.numpy as jnp

    def branchy(x, h0, weight_ih, weight_hh, bias_ih, bias_hh):
        def step(h, x_t):
            a = x_t @ weight_ih.T + bias_ih + h @ weight_hh.T + bias_hh
            h = jnp.where(a > 0, a, 0.1 * a)
            return h, h
        return jax.lax.scan(step, h0, x)[1]

    with pytest.raises(TracingError, match=r"needs the numbers.*test_verify_frameworks_traced.py.*Declare the cell"):
        verify_framework(jax.jit(branchy), None)


@pytest.mark.slow
@pytest.mark.parametrize("cell", ["lstm-no-tanh", "leaky"])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_traced_jax_cells_pass(cell, dtype):
    result = verify_framework(_jax_traced().MAKE[cell](), None, dtype=dtype)
    assert result.ok and result.dtype_model.name == dtype, str(result)
    assert all(line in result.found for line in EQUATIONS[cell])


@pytest.mark.slow
@pytest.mark.parametrize("cell,bug", [(c, b) for c in sorted(torch_traced.BUGS) for b in torch_traced.BUGS[c]])
def test_every_planted_bug_in_a_traced_jax_cell_is_caught_and_localised(cell, bug):
    traced = _jax_traced()
    check_localised(verify_framework(traced.MAKE[cell](bug), None), traced.BUGS[cell][bug])


# -- a traced cell with heads (tests/corpus_torch/heads.py: gated) ---------------------------------
def test_a_traced_cell_with_heads_passes_in_float64_and_float32():
    from corpus_torch import heads

    for dtype in ("float64", "float32"):
        result = verify_framework(heads.gated(), None, heads=heads.HEADS, dtype=dtype)
        assert result.ok and result.dtype_model.name == dtype, str(result)
        assert "traced from torch.export's graph (Core ATen) of one step" in result.found
        assert "2 heads (state (N, 2, H/2), rows ordered head by head)" in result.found
        assert "h[t] = g0[t]*g1[t] + h[t-1]*(1 - g0[t])" in result.found


@pytest.mark.parametrize("bug", ["weight-summed-over-heads", "gate-sigmoid-derivative-as-output"])
def test_a_bug_in_a_traced_cell_with_heads_is_caught_and_localised(bug):
    from corpus_torch import heads

    check_localised(verify_framework(heads.gated(bug), None, heads=heads.HEADS), heads.GATED_BUGS[bug])
