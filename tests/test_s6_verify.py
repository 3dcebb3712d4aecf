"""The verifier on a hand-written NumPy S6 layer (tests/corpus_parallel/s6.py, the selective scan of Mamba
written step by step from the paper's equations, with its own backward): the correct layer passes at
several scales, seeds and lengths (float64, no false alarm), and each planted mistake of the backward
is caught with the forward judged right and localised: the wrong gradients are exactly the blocks on the
broken path (every other gradient is judged right), a local mistake is placed at the last step (a local
derivative, not a message), and a wrong backward message on the state path ``s`` at the first step it
is sent.  The layer reads the initial states through the signature role ``s0`` and returns ``states`` and
``ds0`` (dicts by symrnn's state names ``s`` and ``h``)."""
import numpy as np
import pytest

import symrnn as sr
import symrnn.verify as V
from corpus_parallel import make
from corpus_parallel.s6 import S6_BUGS
from symrnn.errors import UserCodeError
from symrnn.models.layouts import NATIVE

SIGNATURE = V.Signature(("x", "s0", "params"), ("h", "states", "cache"), ("dh", "cache"), ("dx", "ds0", "grads"))
LOCAL = [bug for bug, wrong in S6_BUGS.items() if wrong is not None]


def verify(bug=None, **options):
    forward, backward = make("s6", "sequential", bug)
    return V.verify_layer(forward, backward, sr.builtin_cell("s6"), NATIVE, signature=SIGNATURE, **options)


@pytest.mark.parametrize("scale, seed, T", [(None, 0, 8), (0.3, 1, 8), (1.0, 2, 8), (2.0, 3, 8), (1.0, 4, 200)])
def test_the_correct_layer_passes(scale, seed, T):
    result = verify(scale=scale, seed=seed, T=T)
    assert result.ok, str(result)
    judged = {g.name for g in result.gradients}
    assert {"dW_dt", "db_dt", "dW_B", "dW_C", "dA_log", "dd", "dW_u", "dx", "ds0", "dh0"} <= judged, judged


@pytest.mark.parametrize("bug", LOCAL)
def test_a_local_mistake_is_caught_in_exactly_its_blocks(bug):
    """The transposed outer product is verified at H = 2, the state size: at other sizes it cannot run."""
    result = verify(bug, H=2) if bug == "b-outer-product-transposed" else verify(bug)
    assert not result.ok and result.forward.ok, str(result)
    assert result.wrong and all(g.max_abs_error > g.tolerance for g in result.wrong)
    assert {g.name[1:] for g in result.wrong} == S6_BUGS[bug], str(result)
    if "x" in S6_BUGS[bug]:  # dx is judged per step: wrong already at the last one, where no message is involved
        assert result.localisation["step"] == 8 and result.localisation["path"] is None, str(result)
        assert "a local derivative, not a message" in result.localisation["message"]


def test_a_wrong_message_is_localised_on_the_state_path():
    """``G_t = g_t + Abar_t G_{t+1}`` (Abar one step early) leaves the readout's gradients right (W_C and d
    read s_t and y_t only) and makes the first message, dL/ds from t = 8 to t = 7, wrong."""
    result = verify("adjoint-decay-off-by-one")
    assert not result.ok and result.forward.ok, str(result)
    wrong = {g.name for g in result.wrong}
    assert {"ds0", "dA_log", "dW_dt", "dW_B"} <= wrong and not wrong & {"dW_C", "dd", "dh0"}, str(result)
    assert (result.localisation["path"], result.localisation["step"]) == ("s", 8), str(result)
    assert "dL/ds from t=8 to t=7 is the first wrong backward message" in \
        result.localisation["message"]


def test_the_transposed_outer_product_cannot_hide_behind_another_size():
    """At H = 4 (state size 2) the transposed reduction does not broadcast: the verifier says where the code fails."""
    with pytest.raises(UserCodeError, match=r"backward\(\.\.\.\) raised ValueError: operands could not be broadcast"):
        verify("b-outer-product-transposed")


def test_the_corpus_layer_is_the_s6_cell():
    """The NumPy layer's states equal symrnn's generated forward of the cell (an independent route)."""
    m = sr.Model(sr.builtin_cell("s6"), D=3, H=4, loss="upstream")
    p = m.init_params(seed=3, scale=0.8)
    rng = np.random.default_rng(3)
    x = rng.normal(size=(20, 2, 3))
    s0 = {"s": rng.normal(size=(2, 8)), "h": np.zeros((2, 4))}
    y, states, _ = make("s6", "sequential")[0](x, s0, p)
    cache = m.run_cell(p, x, h0=s0)[2]
    for s in ("s", "h"):
        assert np.allclose(states[s], cache[f"S_{s}"][1:], rtol=1e-13, atol=1e-14), s
