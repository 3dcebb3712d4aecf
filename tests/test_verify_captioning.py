"""symrnn.verify.verify_captioning: the exact route (features -> h0 through an affine map, a word
lookup, a tanh RNN or an LSTM, a readout, the masked temporal softmax loss) agrees with PyTorch's
autograd to 1e-12; a CS231n-style CaptioningRNN (tests/corpus/cs231n_captioning.py) is verified right
for rnn and lstm, and each planted mistake is caught and placed in its part (projection, embedding,
recurrent, readout) and named; bad declarations and returns are refused with a SymRNNError."""
import numpy as np
import pytest

import symrnn.verify as V
from symrnn.errors import ShapeError, SymRNNError, UnknownNameError, UserCodeError
from symrnn.verify.captioning import draw_captions, task_for

from corpus import cs231n_captioning as cs231n

torch = pytest.importorskip("torch")


def _torch_loss(params, features, captions, cell, null=0):
    """The captioning loss written in PyTorch from CS231n's equations (row convention, gates i, f, o, g)."""
    p = {k: torch.tensor(v, dtype=torch.float64, requires_grad=True) for k, v in params.items()}
    feats = torch.tensor(features, dtype=torch.float64)
    ids_in, ids_out = torch.tensor(captions[:, :-1]), torch.tensor(captions[:, 1:])
    mask = (ids_out != null).to(torch.float64)
    h = feats @ p["W_proj"] + p["b_proj"]
    c = torch.zeros_like(h)
    x = p["W_embed"][ids_in]
    H, loss = h.shape[1], 0.0
    for t in range(x.shape[1]):
        a = x[:, t] @ p["Wx"] + h @ p["Wh"] + p["b"]
        if cell == "rnn":
            h = torch.tanh(a)
        else:
            i, f, o = torch.sigmoid(a[:, :H]), torch.sigmoid(a[:, H:2 * H]), torch.sigmoid(a[:, 2 * H:3 * H])
            c = f * c + i * torch.tanh(a[:, 3 * H:])
            h = o * torch.tanh(c)
        log_p = torch.log_softmax(h @ p["W_vocab"] + p["b_vocab"], dim=1)
        loss = loss - (log_p.gather(1, ids_out[:, t:t + 1])[:, 0] * mask[:, t]).sum()
    loss = loss / x.shape[0]
    loss.backward()
    return float(loss.detach()), {k: v.grad.numpy() for k, v in p.items()}


@pytest.mark.parametrize("cell", ["rnn", "lstm"])
@pytest.mark.parametrize("scale", [None, 2.0])
def test_the_exact_route_agrees_with_torch_autograd(cell, scale):
    task = task_for(cell, vocab=9, F=6, W=3, H=4)
    for seed, (T, N, unique) in enumerate([(7, 5, False), (1, 3, False), (5, 1, True)]):
        problem = draw_captions(task, T, N, seed, "", scale, unique=unique)
        user = V.captioning.CaptioningLayout(task).to_user("", problem.params)
        captions = np.concatenate([problem.x[:1], problem.targets]).T
        features = problem.h0["features"]
        loss, grads = task.user_loss(user, features, captions)
        t_loss, t_grads = _torch_loss(user, features, captions, cell)
        assert abs(loss - t_loss) <= 1e-12 * abs(t_loss)
        assert sorted(grads) == sorted(t_grads)
        for k, g in t_grads.items():
            assert np.max(np.abs(grads[k] - g)) <= 1e-12 * np.max(np.abs(g)), (cell, k)
        assert np.any(problem.mask) and (unique or T == 1 or not np.all(problem.mask))


@pytest.mark.parametrize("cell", ["rnn", "lstm"])
def test_the_cs231n_captioning_rnn_is_right(cell):
    model = cs231n.make_model(cell)
    before = model.params
    result = V.verify_captioning(model.loss)
    assert result.ok, str(result)
    name = {"rnn": "rnn-tanh", "lstm": "lstm"}[cell]
    assert result.verdict() == f"RIGHT: {name} captioning code, 8 gradients exact (float64 error model, 4 cases)"
    assert model.params is before  # the model's own parameters are back
    assert {g.name for g in result.gradients} == {"d" + k for k in model.params}


def test_a_float32_implementation_is_judged_with_float32_rounding():
    model = cs231n.make_model("lstm")

    def loss32(params, features, captions):
        model.params = {k: v.astype(np.float32) for k, v in params.items()}
        loss, grads = model.loss(features.astype(np.float32), captions)
        return loss, {k: np.asarray(v, dtype=np.float32) for k, v in grads.items()}

    result = V.verify_captioning(loss32, "lstm")
    assert result.ok and result.dtype_model.name == "float32", str(result)


@pytest.mark.parametrize("cell", ["rnn", "lstm"])
@pytest.mark.parametrize("bug, part, path, step, wrong", [
    ("proj_not_backpropagated", "projection", "initial state", None, ["dW_proj", "db_proj"]),
    ("mask_ignored", "readout", "mask", None, None),
    ("embed_not_accumulated", "embedding", "repeated words", None, ["dW_embed"]),
    ("drop_recurrent", "recurrent", None, 5, ["dWx", "dWh", "db", "dW_proj", "db_proj", "dW_embed"]),
])
def test_a_planted_mistake_is_caught_and_placed(cell, bug, part, path, step, wrong):
    result = V.verify_captioning(cs231n.make_model(cell, bug).loss)
    loc = result.localisation
    assert not result.ok and (loc["part"], loc["path"], loc["step"]) == (part, path, step), str(result)
    if wrong is not None:
        assert [g.name for g in result.wrong] == wrong
    assert result.verdict().endswith(f": {part}" + (f", step {step}" if step else "")), result.verdict()
    assert len(result.verdict()) <= 100


@pytest.mark.parametrize("key, part", [("W_vocab", "readout"), ("b_vocab", "readout"), ("Wh", "recurrent"),
                                       ("b", "recurrent"), ("W_proj", "projection"), ("b_proj", "projection"),
                                       ("W_embed", "embedding")])
def test_a_small_error_in_any_gradient_is_caught_and_placed(key, part):
    exact_loss = task_for("lstm").user_loss

    def off(params, features, captions):
        loss, grads = exact_loss(params, features, captions)
        g = grads[key]
        index = np.unravel_index(np.argmax(np.abs(g)), g.shape)
        g[index] *= 1.001
        return loss, grads

    result = V.verify_captioning(off, "lstm")
    assert [g.name for g in result.wrong] == ["d" + key] and result.localisation["part"] == part, str(result)


def test_the_arguments_follow_args():
    exact_loss = task_for("rnn").user_loss
    result = V.verify_captioning(lambda c, f, p: exact_loss(p, f, c), args=("captions", "features", "params"))
    assert result.ok, str(result)


def test_bad_declarations_and_returns_are_refused():
    exact_loss = task_for("rnn").user_loss
    declared = [(dict(cell="gru"), UnknownNameError, "cell='gru'"),
                (dict(vocab=3), ShapeError, "vocab must be an integer >= 4"),
                (dict(null=1), ShapeError, "null and start are both 1"),
                (dict(start=10), ShapeError, "start must be a word id in 0..9"),
                (dict(T=0), ShapeError, "T must be"),
                (dict(args=("params", "images")), UnknownNameError, "unknown: ['images']"),
                (dict(args=("features", "captions")), UnknownNameError, "as 'params'")]
    for kwargs, error, text in declared:
        with pytest.raises(error, match=None) as info:
            V.verify_captioning(exact_loss, **kwargs)
        assert text in str(info.value), (kwargs, str(info.value))

    def returning(change):
        def fn(params, features, captions):
            loss, grads = exact_loss(params, features, captions)
            return change(loss, grads)
        return fn

    returns = [(lambda l, g: (l, {k: v for k, v in g.items() if k != "b_proj"}), "no gradient for ['b_proj']"),
               (lambda l, g: (l, {**g, "W_proj": g["W_proj"].T}), "'W_proj' has shape (4, 5), expected (5, 4)"),
               (lambda l, g: (l, {**g, "features": np.zeros(3)}), "under ['features'], which name no parameter"),
               (lambda l, g: ("nan?", g), "returned str as its loss"),
               (lambda l, g: (l, list(g.values())), "returned grads of type list"),
               (lambda l, g: l, "expected 2: (loss, grads)")]
    for change, text in returns:
        with pytest.raises(UserCodeError) as info:
            V.verify_captioning(returning(change))
        assert text in str(info.value), (text, str(info.value))
    with pytest.raises(UserCodeError, match="must be the loss function"):
        V.verify_captioning("loss")

    class NoParams:
        params = {"W": np.zeros(2)}

        def loss(self, features, captions):
            return 0.0, {}
    with pytest.raises(UserCodeError, match=r"NoParams.params must be a dict holding W_proj"):
        V.verify_captioning(NoParams().loss)
    with pytest.raises(ShapeError, match="H=3 is given, but CaptioningRNN.params has H=4"):
        V.verify_captioning(cs231n.make_model("rnn").loss, H=3)
    assert issubclass(UserCodeError, SymRNNError) and issubclass(ShapeError, SymRNNError)
