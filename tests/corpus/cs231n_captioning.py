"""A CS231n-style image-captioning RNN (assignment 3's ``CaptioningRNN``), written from its equations.

Image features ``(N, F)`` give the initial state ``h0 = features @ W_proj + b_proj``; the caption
``(N, T+1)`` is split into the inputs ``captions[:, :-1]`` and the scored words ``captions[:, 1:]``;
the inputs are looked up in ``W_embed`` ``(V, W)``; a vanilla tanh RNN or an LSTM (gates i, f, o, g
stacked in that order, row convention: ``Wx (W, G H)``, ``Wh (H, G H)``, ``b (G H,)``) runs over
them; ``scores = h @ W_vocab + b_vocab``; the loss is the softmax cross-entropy of the words that are
not ``<NULL>``, summed over time and averaged over the batch.

``CaptioningRNN(..., bug=name)`` plants one mistake in the backward pass (the forward stays right):

* ``proj_not_backpropagated``: dL/dh0 is not sent back through the projection (dW_proj, db_proj zero);
* ``mask_ignored``: the backward of the loss scores every step, padding included;
* ``embed_not_accumulated``: ``dW_embed[ids] = dx`` instead of ``np.add.at``: a repeated word keeps
  one occurrence's gradient;
* ``drop_recurrent``: the gradient from step t+1 is not added to dL/dh_t.
"""
import numpy as np

BUGS = ("proj_not_backpropagated", "mask_ignored", "embed_not_accumulated", "drop_recurrent")


def _sigmoid(z):
    out = np.empty_like(z)
    pos = z >= 0
    out[pos] = 1.0 / (1.0 + np.exp(-z[pos]))
    e = np.exp(z[~pos])
    out[~pos] = e / (1.0 + e)
    return out


# -- layers ---------------------------------------------------------------------------------------
def affine_forward(x, w, b):
    return x @ w + b, (x, w)


def affine_backward(dout, cache):
    x, w = cache
    return dout @ w.T, x.T @ dout, dout.sum(axis=0)


def embedding_forward(ids, W_embed):
    return W_embed[ids], (ids, W_embed.shape)


def embedding_backward(dout, cache, accumulate=True):
    ids, shape = cache
    dW = np.zeros(shape)
    if accumulate:
        np.add.at(dW, ids, dout)
    else:
        dW[ids] = dout  # a word seen twice keeps one of its gradients
    return dW


def rnn_forward(x, h0, Wx, Wh, b):
    N, T, _ = x.shape
    hs = np.zeros((N, T, h0.shape[1]))
    prev = h0
    for t in range(T):
        prev = np.tanh(x[:, t] @ Wx + prev @ Wh + b)
        hs[:, t] = prev
    return hs, (x, h0, Wx, Wh, hs)


def rnn_backward(dhs, cache, carry=True):
    x, h0, Wx, Wh, hs = cache
    N, T, _ = x.shape
    dx = np.zeros_like(x)
    dWx, dWh, db = np.zeros_like(Wx), np.zeros_like(Wh), np.zeros(Wh.shape[1])
    dnext = np.zeros_like(h0)
    for t in reversed(range(T)):
        dh = dhs[:, t] + (dnext if carry else 0.0)
        da = dh * (1.0 - hs[:, t] ** 2)
        prev = hs[:, t - 1] if t > 0 else h0
        dx[:, t] = da @ Wx.T
        dWx += x[:, t].T @ da
        dWh += prev.T @ da
        db += da.sum(axis=0)
        dnext = da @ Wh.T
    return dx, dnext, dWx, dWh, db


def lstm_forward(x, h0, Wx, Wh, b):
    N, T, _ = x.shape
    H = h0.shape[1]
    hs = np.zeros((N, T, H))
    steps = []
    h, c = h0, np.zeros_like(h0)
    for t in range(T):
        a = x[:, t] @ Wx + h @ Wh + b
        i, f, o = _sigmoid(a[:, :H]), _sigmoid(a[:, H:2 * H]), _sigmoid(a[:, 2 * H:3 * H])
        g = np.tanh(a[:, 3 * H:])
        c_prev, h_prev = c, h
        c = f * c + i * g
        tc = np.tanh(c)
        h = o * tc
        hs[:, t] = h
        steps.append((x[:, t], h_prev, c_prev, i, f, o, g, tc))
    return hs, (steps, Wx, Wh)


def lstm_backward(dhs, cache, carry=True):
    steps, Wx, Wh = cache
    N, T, H = dhs.shape
    dx = np.zeros((N, T, Wx.shape[0]))
    dWx, dWh, db = np.zeros_like(Wx), np.zeros_like(Wh), np.zeros(4 * H)
    dh_next, dc_next = np.zeros((N, H)), np.zeros((N, H))
    for t in reversed(range(T)):
        xt, h_prev, c_prev, i, f, o, g, tc = steps[t]
        dh = dhs[:, t] + (dh_next if carry else 0.0)
        dc = dc_next + dh * o * (1.0 - tc ** 2)
        da = np.concatenate([dc * g * i * (1 - i), dc * c_prev * f * (1 - f), dh * tc * o * (1 - o),
                             dc * i * (1 - g ** 2)], axis=1)
        dx[:, t] = da @ Wx.T
        dWx += xt.T @ da
        dWh += h_prev.T @ da
        db += da.sum(axis=0)
        dh_next, dc_next = da @ Wh.T, dc * f
    return dx, dh_next, dWx, dWh, db


def temporal_affine_forward(h, w, b):
    return h @ w + b, (h, w)


def temporal_affine_backward(dout, cache):
    h, w = cache
    dh = dout @ w.T
    return dh, np.einsum("nth,ntv->hv", h, dout), dout.sum(axis=(0, 1))


def temporal_softmax_loss(scores, y, mask, mask_in_backward=True):
    N = scores.shape[0]
    shifted = scores - scores.max(axis=2, keepdims=True)
    log_p = shifted - np.log(np.exp(shifted).sum(axis=2, keepdims=True))
    picked = np.take_along_axis(log_p, y[..., None], axis=2)[..., 0]
    loss = -(picked * mask).sum() / N
    dscores = np.exp(log_p)
    np.put_along_axis(dscores, y[..., None], np.take_along_axis(dscores, y[..., None], axis=2) - 1.0, axis=2)
    if mask_in_backward:
        dscores = dscores * mask[..., None]
    return loss, dscores / N


# -- the model --------------------------------------------------------------------------------------
class CaptioningRNN:
    """``params`` holds W_proj, b_proj, W_embed, Wx, Wh, b, W_vocab, b_vocab; ``loss(features, captions)``."""

    def __init__(self, word_to_idx, input_dim=5, wordvec_dim=3, hidden_dim=4, cell_type="rnn", seed=0, bug=None):
        if cell_type not in ("rnn", "lstm"):
            raise ValueError(f"cell_type {cell_type!r}")
        if bug is not None and bug not in BUGS:
            raise ValueError(f"unknown bug {bug!r}; expected None or one of {BUGS}")
        self.cell_type, self.bug = cell_type, bug
        self.word_to_idx = word_to_idx
        self._null, self._start = word_to_idx["<NULL>"], word_to_idx.get("<START>")
        V, G = len(word_to_idx), 4 if cell_type == "lstm" else 1
        rng = np.random.default_rng(seed)
        W, H, F = wordvec_dim, hidden_dim, input_dim
        self.params = {"W_embed": rng.normal(size=(V, W)) / 10, "W_proj": rng.normal(size=(F, H)) / np.sqrt(F),
                       "b_proj": np.zeros(H), "Wx": rng.normal(size=(W, G * H)) / np.sqrt(W),
                       "Wh": rng.normal(size=(H, G * H)) / np.sqrt(H), "b": np.zeros(G * H),
                       "W_vocab": rng.normal(size=(H, V)) / np.sqrt(H), "b_vocab": np.zeros(V)}

    def loss(self, features, captions):
        p = self.params
        captions_in, captions_out = captions[:, :-1], captions[:, 1:]
        mask = captions_out != self._null
        h0, proj_cache = affine_forward(features, p["W_proj"], p["b_proj"])
        x, embed_cache = embedding_forward(captions_in, p["W_embed"])
        forward, backward = (rnn_forward, rnn_backward) if self.cell_type == "rnn" else (lstm_forward, lstm_backward)
        hs, cell_cache = forward(x, h0, p["Wx"], p["Wh"], p["b"])
        scores, out_cache = temporal_affine_forward(hs, p["W_vocab"], p["b_vocab"])
        loss, dscores = temporal_softmax_loss(scores, captions_out, mask, self.bug != "mask_ignored")

        grads = {}
        dhs, grads["W_vocab"], grads["b_vocab"] = temporal_affine_backward(dscores, out_cache)
        dx, dh0, grads["Wx"], grads["Wh"], grads["b"] = backward(dhs, cell_cache, self.bug != "drop_recurrent")
        grads["W_embed"] = embedding_backward(dx, embed_cache, self.bug != "embed_not_accumulated")
        if self.bug == "proj_not_backpropagated":
            grads["W_proj"], grads["b_proj"] = np.zeros_like(p["W_proj"]), np.zeros_like(p["b_proj"])
        else:
            _, grads["W_proj"], grads["b_proj"] = affine_backward(dh0, proj_cache)
        return loss, grads


def vocabulary(V):
    """A word_to_idx of V entries: <NULL> 0, <START> 1, <END> 2, then words."""
    words = ["<NULL>", "<START>", "<END>"] + [f"w{k}" for k in range(V - 3)]
    return {w: k for k, w in enumerate(words)}


def make_model(cell_type="rnn", bug=None, V=10, F=5, W=3, H=4):
    return CaptioningRNN(vocabulary(V), input_dim=F, wordvec_dim=W, hidden_dim=H, cell_type=cell_type, bug=bug)
