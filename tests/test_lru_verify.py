"""The verifier on a hand-written NumPy LRU layer (tests/corpus_parallel, ``lru`` solved step by step in
complex arithmetic): the correct layer passes; a dropped gamma path and a conjugation error in the
coupling of the real and imaginary parts are caught and localised.  The layer reads every initial state
through the signature role ``s0`` and returns ``states`` and ``ds0`` (dicts by symrnn's state names)."""
import numpy as np
import pytest

import symrnn as sr
import symrnn.verify as V
from corpus_parallel import make
from symrnn.errors import UserCodeError
from symrnn.models.layouts import NATIVE

LRU_SIGNATURE = V.Signature(("x", "s0", "params"), ("h", "states", "cache"), ("dh", "cache"), ("dx", "ds0", "grads"))


def verify(bug=None, form="sequential", forward=None, backward=None, **options):
    f, b = make("lru", form, bug)
    return V.verify_layer(forward or f, backward or b, sr.builtin_cell("lru"), NATIVE, signature=LRU_SIGNATURE,
                          **options)


@pytest.mark.parametrize("scale, seed", [(None, 0), (0.3, 1), (1.0, 2)])
def test_the_correct_layer_passes(scale, seed):
    result = verify(scale=scale, seed=seed)
    assert result.ok, str(result)
    assert "dh_re0" in {g.name for g in result.gradients} and "dout0" in {g.name for g in result.gradients}


def test_a_dropped_gamma_path_is_caught_in_dnu_alone():
    """gamma = sqrt(1 - exp(-2 exp(nu))) depends on nu: forgetting that term leaves every other gradient right."""
    result = verify("gamma-path-dropped")
    assert not result.ok and result.forward.ok, str(result)
    assert [g.name for g in result.wrong] == ["dnu"], str(result)
    assert result.localisation["gradient"] == "dnu"


def test_a_conjugation_error_is_caught_on_the_complex_message():
    """The adjoint of s_{t-1} is conj(lambda) times that of s_t; lambda itself flips the sign of the
    coupling between the real and imaginary parts.  The message probe places it on the pair (h_re, h_im)
    at the last step (the first message the sweep sends); C and d, read before any message, stay right."""
    result = verify("conjugation-error")
    assert not result.ok and result.forward.ok, str(result)
    wrong = {g.name for g in result.wrong}
    assert {"dh_re0", "dh_im0"} <= wrong and not wrong & {"dC_re", "dC_im", "dd", "dout0"}, str(result)
    assert result.localisation["path"] == "h_re,h_im" and result.localisation["step"] == 8, str(result)
    assert "dL/d(h_re, h_im) from t=8 to t=7" in result.localisation["message"]


def test_the_state_dicts_are_checked():
    f, b = make("lru", "sequential")

    def bad_states(x, s0, p):
        y, states, cache = f(x, s0, p)
        return y, {**states, "s": states["h_re"]}, cache

    def bad_ds0(dy, cache):
        dx, ds0, grads = b(dy, cache)
        return dx, [ds0["h_re"]], grads

    with pytest.raises(UserCodeError, match=r"a dict keyed by the cell's states \['h_re', 'h_im', 'out'\]"):
        verify(forward=bad_states)
    with pytest.raises(UserCodeError, match="where a dict keyed by the cell's states"):
        verify(backward=bad_ds0)


def test_the_forward_check_names_the_first_step_and_quantity():
    """The earliest step at which any quantity differs is reported, not the quantity that differs most:
    h_re is off by 1e-3 from step 2, the output by 1.0 from step 5."""
    f, b = make("lru", "sequential")

    def slightly_wrong(x, s0, p):
        y, states, cache = f(x, s0, p)
        states = {k: v.copy() for k, v in states.items()}
        states["h_re"][1:] += 1e-3
        states["out"][4:] += 1.0
        return states["out"], states, cache

    def output_only_wrong(x, s0, p):
        y, states, cache = f(x, s0, p)
        y = y.copy()
        y[5:] *= 1.5
        return y, {"h_re": states["h_re"]}, cache

    result = verify(forward=slightly_wrong)
    assert not result.forward.ok and (result.forward.quantity, result.forward.step) == ("h_re", 2), str(result)
    assert "the state h_re" in result.forward.message
    result = verify(forward=output_only_wrong)
    assert (result.forward.quantity, result.forward.step) == ("out", 6), str(result)
    assert "the output out" in result.forward.message and "where the sequential definition gives" in \
        result.forward.message


def test_the_corpus_layer_is_the_lru_cell():
    """The NumPy layer's forward equals symrnn's generated forward of the cell (an independent route)."""
    m = sr.Model(sr.builtin_cell("lru"), D=3, H=4, loss="upstream")
    p = m.init_params(seed=3, scale=0.5)
    rng = np.random.default_rng(3)
    x = rng.normal(size=(20, 2, 3))
    s0 = {"h_re": rng.normal(size=(2, 4)), "h_im": rng.normal(size=(2, 4)), "out": np.zeros((2, 3))}
    y, states, _ = make("lru", "sequential")[0](x, s0, p)
    cache = m.run_cell(p, x, h0=s0)[2]
    for s in ("h_re", "h_im", "out"):
        assert np.allclose(states[s], cache[f"S_{s}"][1:], rtol=1e-13, atol=1e-14), s
