"""symrnn.verify.frameworks on the cells of today: minGRU (Feng et al. 2024) and sLSTM (xLSTM, Beck
et al. 2024) written as torch autograd Functions (tests/corpus_torch) and JAX custom_vjp functions
(tests/corpus_jax) from the papers' equations, with PyTorch's stacking (``weight_ih`` = ``(G*H, D)``).

The cell and its gate order are matched from the forward; the correct code passes in float64 and
float32; every planted bug is caught and localised (gradient, gate block, path, step, fingerprint).
JAX compiles once per shape, so its bug sweep is marked slow; one right and one wrong JAX minGRU
run always."""
import os
import sys

import pytest

torch = pytest.importorskip("torch")

sys.path.insert(0, os.path.dirname(__file__))
from corpus_torch import mingru as torch_mingru
from corpus_torch import slstm as torch_slstm
from test_verify_frameworks import check_localised

from symrnn.verify import verify_framework

TORCH = {"min-gru": torch_mingru, "slstm": torch_slstm}
FAST_SLSTM_BUGS = ("normaliser-path-dropped", "cell-path-dropped", "chunk-boundary", "saved-in-place")


@pytest.mark.parametrize("cell", sorted(TORCH))
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_correct_functions_of_today_pass_and_their_cell_is_found(cell, dtype):
    result = verify_framework(TORCH[cell].make(), None, dtype=dtype)
    assert result.ok and result.cell == cell and result.dtype_model.name == dtype, str(result)
    assert f"the cell of today {cell!r}" in result.found
    assert ("gates i f z o" if cell == "slstm" else "gates z h") in result.found


def _torch_bugs():
    for cell in sorted(TORCH):
        for bug in TORCH[cell].BUGS:
            slow = cell == "slstm" and bug not in FAST_SLSTM_BUGS
            yield pytest.param(cell, bug, marks=[pytest.mark.slow] if slow else [])


@pytest.mark.parametrize("cell,bug", list(_torch_bugs()))
def test_every_planted_bug_of_today_is_caught_and_localised(cell, bug):
    check_localised(verify_framework(TORCH[cell].make(bug), cell), TORCH[cell].BUGS[bug])


def test_a_declared_cell_of_today_that_the_forward_does_not_compute_is_refused():
    from symrnn.verify.trace import TracingError

    with pytest.raises(TracingError, match="computes no 'min-lstm'"):
        verify_framework(torch_mingru.make(), "min-lstm")


def test_the_exact_route_agrees_with_torch_autograd_of_the_paper_equations():
    """An independent route: a Function whose backward is torch autograd through the plain sLSTM forward
    (written again here, from the equations) passes with errors at float64's rounding."""
    def plain(x, h0, weight_ih, weight_hh, bias):
        h, c, n, m, hs = h0, 0 * h0, 0 * h0, 0 * h0, []
        for t in range(x.shape[0]):
            ibar, fbar, zbar, obar = (x[t] @ weight_ih.T + h @ weight_hh.T + bias).chunk(4, dim=1)
            logf = -torch.nn.functional.softplus(-fbar)
            m_new = torch.maximum(logf + m, ibar)
            i_s, f_s = torch.exp(ibar - m_new), torch.exp(logf + m - m_new)
            c, n, m = f_s * c + i_s * torch.tanh(zbar), f_s * n + i_s, m_new
            h = torch.sigmoid(obar) * c / n
            hs.append(h)
        return torch.stack(hs)

    class Through(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x, h0, weight_ih, weight_hh, bias):
            ctx.save_for_backward(x, h0, weight_ih, weight_hh, bias)
            return plain(x, h0, weight_ih, weight_hh, bias)

        @staticmethod
        def backward(ctx, dh):
            with torch.enable_grad():
                inputs = [t.detach().requires_grad_() for t in ctx.saved_tensors]
                return torch.autograd.grad(plain(*inputs), inputs, dh)

    result = verify_framework(Through, "slstm")
    assert result.ok, str(result)
    assert max(g.max_abs_error / max(g.exact_norm, 1e-300) for g in result.gradients) < 1e-12


# -- JAX ---------------------------------------------------------------------------------------------
def _jax():
    pytest.importorskip("jax")
    from corpus_jax import mingru as jax_mingru
    from corpus_jax import slstm as jax_slstm

    return {"min-gru": jax_mingru, "slstm": jax_slstm}


def test_a_right_and_a_wrong_jax_min_gru():
    JAX = _jax()
    right = verify_framework(JAX["min-gru"].make(), None, lengths=())
    assert right.ok and right.cell == "min-gru", str(right)
    bug = "gate-sigmoid-derivative-as-output"
    check_localised(verify_framework(JAX["min-gru"].make(bug), "min-gru", lengths=()), JAX["min-gru"].BUGS[bug])


@pytest.mark.slow
@pytest.mark.parametrize("cell", ["min-gru", "slstm"])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_correct_jax_functions_of_today_pass(cell, dtype):
    result = verify_framework(_jax()[cell].make(), None, dtype=dtype)
    assert result.ok and result.cell == cell and result.dtype_model.name == dtype, str(result)


JAX_BUGS = [(cell, bug) for cell, bugs in (("min-gru", torch_mingru.BUGS), ("slstm", torch_slstm.BUGS))
            for bug in bugs if bug != "saved-in-place"]  # the same bugs as the torch corpus, but for torch's hygiene


@pytest.mark.slow
@pytest.mark.parametrize("cell,bug", JAX_BUGS)
def test_every_planted_jax_bug_of_today_is_caught_and_localised(cell, bug):
    JAX = _jax()
    assert set(JAX[cell].BUGS) == {b for c, b in JAX_BUGS if c == cell}
    check_localised(verify_framework(JAX[cell].make(bug), cell), JAX[cell].BUGS[bug])


# -- heads ---------------------------------------------------------------------------------------------
def test_a_multi_head_min_gru_passes_in_its_head_layout():
    from corpus_torch import heads

    for dtype in ("float64", "float32"):
        result = verify_framework(heads.make(), None, heads=heads.HEADS, dtype=dtype)
        assert result.ok and result.cell == "min-gru", str(result)
        assert "2 heads (state (N, 2, H/2), rows ordered head by head)" in result.found


@pytest.mark.parametrize("bug", ["weight-summed-over-heads", "bias-summed-over-head-units",
                                 "gate-sigmoid-derivative-as-output", "decay-path-dropped"])
def test_a_reduction_over_the_wrong_axis_of_the_heads_is_named(bug):
    from corpus_torch import heads

    result = verify_framework(heads.make(bug), None, heads=heads.HEADS)
    check_localised(result, heads.BUGS[bug])
    if "heads" in bug or "units" in bug:
        assert "reduction over the wrong axis of the head layout" in str(result)


def test_heads_must_divide_the_state_and_be_a_count():
    from corpus_torch import heads

    from symrnn.errors import UnknownNameError

    with pytest.raises(UnknownNameError, match="positive integer"):
        verify_framework(heads.make(), None, heads=0)
    assert verify_framework(heads.make(heads=2), None, heads=2, H=6).ok  # H = 6: 3 units a head
