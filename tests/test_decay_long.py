"""T = 100000: streamed, in log space, finite and equal to the closed forms; and bad input refused."""
import numpy as np
import pytest

import symrnn as sr
from symrnn.decay import decay_profile, lyapunov_spectrum
from symrnn.decay.jacobian_stream import JacobianStream
from symrnn.decay.weights import make_params
from symrnn.errors import ParameterError, ShapeError, UnknownNameError

T_LONG = 100_000


def _orthogonal(H, seed=0):
    q, r = np.linalg.qr(np.random.default_rng(seed).standard_normal((H, H)))
    return q * np.sign(np.diagonal(r))


@pytest.mark.parametrize("rho", [0.9, 1.1])
def test_t_100000_contracting_and_expanding_tanh(rho):
    """||W^T|| = rho^T is 1e-4576 or 1e+4139: far outside float64, exact in log space."""
    H = 2
    model = sr.Model("rnn-tanh", D=1, H=H, loss="upstream")
    params = dict(U=np.zeros((H, 1)), W=rho * _orthogonal(H), b=np.zeros(H))
    lags = [1, 10, 1000, T_LONG]
    p = decay_profile(model, params, T_LONG, k=H, inputs="zero", lags=lags)
    assert np.isfinite(p.log_spectral).all() and np.isfinite(p.exponents).all()
    assert np.allclose(p.log_spectral, np.array(lags) * np.log(rho), rtol=1e-12, atol=1e-12)
    assert np.allclose(p.exponents, np.log(rho), atol=1e-12)
    assert np.allclose(p.log_bound, p.log_spectral, rtol=1e-12)


def test_t_100000_lstm_cell_path_is_prod_f():
    H = 2
    model = sr.Model("lstm", D=1, H=H, loss="upstream")
    params = make_params(model, "pytorch", scale=0.0, seed=0)  # recurrent weights zero
    params.update(U_f=np.zeros((H, 1)), b_f=np.full(H, 1.0))
    p = decay_profile(model, params, T_LONG, k=0, inputs="random", lags=[1, 100, T_LONG])
    expected = np.array([1, 100, T_LONG]) * np.log(1 / (1 + np.exp(-1.0)))  # sigmoid(1)^T = 1e-13641 at T_LONG
    assert np.allclose(p.direct["c"][0], expected, rtol=1e-12)
    assert np.allclose(p.blocks["c<-c"][0], expected, rtol=1e-12)
    assert np.isfinite(p.log_spectral).all()


def test_memory_of_a_stream_does_not_grow_with_t():
    model = sr.Model("lstm", D=2, H=8, loss="upstream")
    stream = JacobianStream(model)
    C = stream.chunk_length()
    assert C * (2 * 8) ** 2 * 8 <= 1 << 23  # one chunk of Jacobians is all that is held


def test_streaming_matches_one_long_chunk():
    """The chunked forward restarts from each chunk's last state: the same numbers as one pass."""
    model = sr.Model("gru", D=2, H=3, loss="upstream")
    params = make_params(model, "xavier", 1.0, seed=1)
    T = 700
    a = decay_profile(model, params, T, k=3, inputs="random")
    b = decay_profile(model, params, T, k=3, inputs="random",
                      stream=_tiny_chunks(JacobianStream(model)))
    assert np.allclose(a.log_spectral, b.log_spectral, atol=1e-10)
    assert np.allclose(a.exponents, b.exponents, atol=1e-10)


def _tiny_chunks(stream):
    stream.chunk_length = lambda N=1: 7
    return stream


@pytest.mark.parametrize("kwargs, error, words", [
    (dict(T=0), ShapeError, "T must be an integer >= 1"),
    (dict(T=10, k=7), ShapeError, "state has size 6"),
    (dict(T=10, lags=[0, 3]), ShapeError, "lags must lie in 1 .. T"),
    (dict(T=10, h0="ones"), ParameterError, "h0='ones'"),
])
def test_bad_arguments_are_refused(kwargs, error, words):
    model = sr.Model("lstm", D=1, H=3, loss="upstream")
    params = make_params(model)
    with pytest.raises(error, match=words):
        decay_profile(model, params, **kwargs)


def test_bad_weights_are_refused():
    model = sr.Model("rnn-tanh", D=1, H=3, loss="upstream")
    with pytest.raises(UnknownNameError, match="Unknown initialisation scheme 'he'"):
        make_params(model, init="he")
    with pytest.raises(ParameterError, match="scale must be a finite number >= 0, got -1"):
        make_params(model, scale=-1)
    with pytest.raises(UnknownNameError, match="scale_by='norm'"):
        make_params(model, scale_by="norm")
    with pytest.raises(ShapeError, match="state has size 3"):
        lyapunov_spectrum(model, make_params(model), 10, k=4)


def test_scale_by_radius_and_sigma():
    model = sr.Model("gru", D=2, H=5, loss="upstream")
    p = make_params(model, "xavier", 0.8, scale_by="radius", seed=2)
    for name in ("W_r", "W_z", "W_n"):
        assert np.max(np.abs(np.linalg.eigvals(p[name]))) == pytest.approx(0.8, rel=1e-12)
    p = make_params(model, "orthogonal", 1.7, scale_by="sigma", seed=2)
    assert np.linalg.norm(p["W_n"], 2) == pytest.approx(1.7, rel=1e-12)
    assert np.allclose(np.linalg.svd(p["W_n"], compute_uv=False), 1.7)


def test_trained_weights_through_layouts(torch64):
    torch = torch64.torch
    torch.manual_seed(0)
    module = torch.nn.LSTM(3, 4)
    from symrnn.decay.weights import load_params, sizes_of

    sd = module.state_dict()
    D, H = sizes_of("lstm", sd)
    model = sr.Model("lstm", D=D, H=H, loss="upstream")
    params = load_params(model, sd, layout="pytorch")
    p = decay_profile(model, params, 50, k=2)
    assert np.isfinite(p.exponents).all()
    assert np.allclose(params["W_f"], sd["weight_hh_l0"][4:8].numpy())


def test_keras_weights_through_layouts():
    from symrnn.models import layouts
    from symrnn.decay.weights import load_params, sizes_of

    model = sr.Model("gru", D=2, H=3, loss="upstream")
    params = make_params(model, "xavier", 1.0, seed=5)
    keras = layouts.to_keras("gru", params)
    assert sizes_of("gru", keras, "keras") == (2, 3)
    loaded = load_params(model, keras, layout="keras")
    for k in params:
        assert np.allclose(loaded[k], params[k], rtol=0, atol=1e-15)


def test_the_engine_never_imports_decay():
    """symrnn.decay uses the engine; the engine (everything but the CLI and the demo) never imports it."""
    import pathlib
    import re

    root = pathlib.Path(sr.__file__).parent
    for path in root.rglob("*.py"):
        rel = path.relative_to(root)
        if rel.parts[0] == "decay" or rel.name in ("cli.py", "demo.py"):
            continue
        assert not re.search(r"^\s*(from\s+\S*decay\S*\s+import|import\s+\S*decay)", path.read_text(), re.M), rel
