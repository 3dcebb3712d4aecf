"""symrnn.verify.frameworks on JAX custom_vjp functions (tests/corpus_jax).

XLA compiles the code once per shape the verifier uses (cases, probe, shrinking): a verification
takes seconds to tens of seconds on a busy CPU, so the whole corpus is marked slow; one right and
one wrong function run always."""
import os
import sys

import pytest

pytest.importorskip("jax")

sys.path.insert(0, os.path.dirname(__file__))
from corpus_jax import gru, lstm, rnn
from test_verify_frameworks import check_localised

from symrnn.verify import verify_framework

CELLS = {"rnn-tanh": rnn, "lstm": lstm, "gru": gru}


def test_a_right_and_a_wrong_rnn_without_changing_jax_config():
    import jax

    before = jax.config.jax_enable_x64
    right = verify_framework(rnn.make(), None, dtype="float32", lengths=())
    assert right.ok and right.cell == "rnn-tanh" and right.dtype_model.name == "float32", str(right)
    assert "JAX function rnn (custom_vjp), float32" in right.found
    wrong = verify_framework(rnn.make("h-for-h-prev"), "rnn-tanh", lengths=())
    check_localised(wrong, rnn.BUGS["h-for-h-prev"])
    assert jax.config.jax_enable_x64 == before


@pytest.mark.slow
@pytest.mark.parametrize("cell", sorted(CELLS))
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_correct_custom_vjp_functions_pass(cell, dtype):
    result = verify_framework(CELLS[cell].make(), None, dtype=dtype)
    assert result.ok and result.cell == cell and result.dtype_model.name == dtype, str(result)


@pytest.mark.slow
@pytest.mark.parametrize("cell,bug", [(c, b) for c in sorted(CELLS) for b in CELLS[c].BUGS])
def test_every_planted_custom_vjp_bug_is_caught_and_localised(cell, bug):
    """In float64, as the torch corpus (float32 code is judged without a false alarm above; in float32 the
    LSTM's 1% message error is caught at its step but its path is left unnamed)."""
    check_localised(verify_framework(CELLS[cell].make(bug), cell), CELLS[cell].BUGS[bug])


# -- heads (tests/corpus_jax/heads.py) ----------------------------------------------------------------
def test_a_multi_head_custom_vjp_passes_and_a_sum_over_the_heads_is_named():
    from corpus_jax import heads

    for dtype in ("float64", "float32"):
        result = verify_framework(heads.make(), None, heads=heads.HEADS, dtype=dtype)
        assert result.ok and result.dtype_model.name == dtype, str(result)
        assert "2 heads (state (N, 2, H/2), rows ordered head by head)" in result.found
    bug = "weight-summed-over-heads"
    check_localised(verify_framework(heads.make(bug), None, heads=heads.HEADS), heads.BUGS[bug])


@pytest.mark.slow
@pytest.mark.parametrize("bug", ["bias-summed-over-head-units", "gate-sigmoid-derivative-as-output",
                                 "decay-path-dropped"])
def test_every_multi_head_custom_vjp_bug_is_caught_and_localised(bug):
    from corpus_jax import heads

    check_localised(verify_framework(heads.make(bug), None, heads=heads.HEADS), heads.BUGS[bug])


def test_a_traced_custom_vjp_cell_with_heads_passes():
    from corpus_jax import heads

    for dtype in ("float64", "float32"):
        result = verify_framework(heads.gated(), None, heads=heads.HEADS, dtype=dtype)
        assert result.ok and result.dtype_model.name == dtype, str(result)
        assert "traced from its jaxpr of one step" in result.found and "rows ordered head by head" in result.found
        assert "h[t] = g0[t]*g1[t] + h[t-1]*(1 - g0[t])" in result.found


@pytest.mark.slow
@pytest.mark.parametrize("bug", ["weight-summed-over-heads", "gate-sigmoid-derivative-as-output"])
def test_a_bug_in_a_traced_custom_vjp_cell_with_heads_is_caught_and_localised(bug):
    from corpus_jax import heads

    check_localised(verify_framework(heads.gated(bug), None, heads=heads.HEADS), heads.GATED_BUGS[bug])
