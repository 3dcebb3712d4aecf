"""The verifier on a hand-written NumPy mLSTM layer (tests/corpus_today/matrix_layers.py, heads of size 2,
memory as ``(N, heads, d, d)`` arrays): the correct layer passes, and each planted mistake (a dropped
normaliser path, a missing stabiliser subtraction, a wrong outer-product transpose) is caught with the
forward judged right and localised to the gate blocks it touches: the wrong gradients are exactly
those of the blocks on the broken path, the others are judged right."""
import pytest

import symrnn as sr
import symrnn.verify as V
from corpus_today.matrix_layers import MLSTM_BUGS, make_mlstm
from symrnn.models.layouts import NATIVE

SIGNATURE = V.Signature(("x", "h0", "params"), ("h", "cache"), ("dh", "cache"), ("dx", "dh0", "grads"))

#: the blocks (suffix of W_*, b_*) each mistake must make wrong; every other block must be judged right
WRONG_BLOCKS = {
    "normaliser-path-dropped": {"q", "k", "i", "f"},  # n = f n + i k is read by n^T q
    "stabiliser-subtraction-missing": {"i"},
    "outer-product-transposed": {"k", "v"},
}


def verify(bug=None, **options):
    forward, backward = make_mlstm(bug)
    return V.verify_layer(forward, backward, sr.builtin_cell("mlstm"), NATIVE, signature=SIGNATURE, **options)


def test_correct_layer_passes():
    result = verify()
    assert result.ok, str(result)


@pytest.mark.parametrize("bug", MLSTM_BUGS)
def test_every_planted_bug_is_caught_and_localised(bug):
    result = verify(bug)
    assert not result.ok and result.forward.ok, f"mlstm with {bug} passed:\n{result}"
    assert result.wrong and all(g.max_abs_error > g.tolerance for g in result.wrong)
    blocks = {g.name.split("_")[1] for g in result.wrong if g.name.startswith(("dW_", "db_"))}
    assert blocks == WRONG_BLOCKS[bug], str(result)
    assert result.localisation["gradient"].split("_")[1] in WRONG_BLOCKS[bug]
    assert result.localisation["step"] == 8, str(result)  # the last step: the first the sweep meets


def test_the_planted_bugs_are_the_catalogued_ones():
    assert set(MLSTM_BUGS) == set(WRONG_BLOCKS)
