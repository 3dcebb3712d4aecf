"""An encoder-decoder in the style of "Deep Learning from Scratch 2" (chapter 7): layer objects.

Conventions (row convention, batch-major, float64), written from the equations:

* ``TimeEmbedding(W)``: ``forward(ids) -> W[ids]``; ``backward(dout)`` adds each row of
  ``dout`` into ``dW`` at its id (``np.add.at``: ids repeat).
* ``TimeAffine(W, b)``: ``(N, T, D) @ W (D, K) + b``.
* ``TimeSoftmaxWithLoss``: softmax cross-entropy averaged over the ``N * T`` tokens.
* ``TimeLSTM`` is :class:`dlfs2_layers.TimeLSTM` (gate blocks f, g, i, o).
* ``Encoder(W_emb, Wx, Wh, b)``: embedding, LSTM from zero states; ``forward(xs)`` returns the
  last hidden state; ``backward(dh)`` sends ``dh`` into the last step only.
* ``Decoder(W_emb, Wx, Wh, b, W_out, b_out)``: embedding, LSTM started from ``h`` (the
  encoder's, copied; ``c`` zero), affine readout.  ``PeekyDecoder``: the same with the
  encoder's ``h`` (the context) put *first* in the LSTM's input ``[h; emb]`` and in the
  readout's ``[h; h_t]`` at every step, so ``Wx`` is ``(H + E, 4H)`` and ``W_out`` ``(2H, K)``.
* ``Seq2seq(params, peeky=False)``: ``forward(xs, ts_in, ts_out) -> loss``, ``backward()``;
  ``grads()`` the gradients keyed as ``params``: ``emb_src``, ``emb_tgt``, ``enc.Wx``,
  ``enc.Wh``, ``enc.b``, ``dec.Wx``, ``dec.Wh``, ``dec.b``, ``out.W``, ``out.b_out``
  (``symrnn.verify.verify_seq2seq(..., layout="dlfs2")``'s names).

``bug`` plants one mistake: ``"bridge_dropped"`` (the encoder receives no gradient from the
decoder's initial state: ``dhs`` stays zero), ``"decoder_drop_recurrent"`` (the decoder's LSTM
carries no gradient from step to step), ``"peeky_context_dropped"`` (the context's gradient from
the decoder's steps is not added to ``dh``).
"""
import numpy as np

from .dlfs2_layers import TimeLSTM

BUGS = ("bridge_dropped", "decoder_drop_recurrent", "peeky_context_dropped")


class TimeEmbedding:
    def __init__(self, W):
        self.params, self.grads = [W], [np.zeros_like(W)]

    def forward(self, ids):
        self.ids = ids
        return self.params[0][ids]

    def backward(self, dout):
        dW = self.grads[0]
        dW[...] = 0
        np.add.at(dW, self.ids, dout)


class TimeAffine:
    def __init__(self, W, b):
        self.params, self.grads = [W, b], [np.zeros_like(W), np.zeros_like(b)]

    def forward(self, x):
        self.x = x
        W, b = self.params
        return x @ W + b

    def backward(self, dout):
        W, _ = self.params
        N, T, K = dout.shape
        self.grads[0][...] = self.x.reshape(N * T, -1).T @ dout.reshape(N * T, K)
        self.grads[1][...] = dout.sum(axis=(0, 1))
        return dout @ W.T


class TimeSoftmaxWithLoss:
    params, grads = [], []

    def forward(self, scores, ts):
        N, T, K = scores.shape
        shifted = scores - scores.max(axis=2, keepdims=True)
        p = np.exp(shifted)
        p /= p.sum(axis=2, keepdims=True)
        self.p, self.ts = p, ts
        n, t = np.indices((N, T))
        return -np.log(p[n, t, ts]).sum() / (N * T)

    def backward(self):
        N, T, _ = self.p.shape
        d = self.p.copy()
        n, t = np.indices((N, T))
        d[n, t, self.ts] -= 1
        return d / (N * T)


class Encoder:
    def __init__(self, W_emb, Wx, Wh, b, bug=None):
        self.embed, self.lstm, self.bug = TimeEmbedding(W_emb), TimeLSTM(Wx, Wh, b, stateful=False), bug
        self.params = self.embed.params + self.lstm.params
        self.grads = self.embed.grads + self.lstm.grads

    def forward(self, xs):
        self.hs = self.lstm.forward(self.embed.forward(xs))
        return self.hs[:, -1, :]

    def backward(self, dh):
        dhs = np.zeros_like(self.hs)
        if self.bug != "bridge_dropped":
            dhs[:, -1, :] = dh
        self.embed.backward(self.lstm.backward(dhs))


class Decoder:
    peeky = False

    def __init__(self, W_emb, Wx, Wh, b, W_out, b_out, bug=None):
        lstm_bug = "drop_recurrent" if bug == "decoder_drop_recurrent" else None
        self.embed = TimeEmbedding(W_emb)
        self.lstm = TimeLSTM(Wx, Wh, b, stateful=True, bug=lstm_bug)
        self.affine, self.bug = TimeAffine(W_out, b_out), bug
        self.params = self.embed.params + self.lstm.params + self.affine.params
        self.grads = self.embed.grads + self.lstm.grads + self.affine.grads

    def forward(self, ts, h):
        self.lstm.set_state(h)
        return self.affine.forward(self.lstm.forward(self.embed.forward(ts)))

    def backward(self, dscore):
        self.embed.backward(self.lstm.backward(self.affine.backward(dscore)))
        return self.lstm.dh


class PeekyDecoder(Decoder):
    peeky = True

    def forward(self, ts, h):
        N, T = ts.shape
        self.H = h.shape[1]
        context = np.repeat(h[:, None, :], T, axis=1)
        self.lstm.set_state(h)
        out = self.lstm.forward(np.concatenate([context, self.embed.forward(ts)], axis=2))
        return self.affine.forward(np.concatenate([context, out], axis=2))

    def backward(self, dscore):
        H = self.H
        dout = self.affine.backward(dscore)
        d_context = dout[:, :, :H].sum(axis=1)
        dx = self.lstm.backward(np.ascontiguousarray(dout[:, :, H:]))
        self.embed.backward(dx[:, :, H:])
        if self.bug != "peeky_context_dropped":
            d_context = d_context + dx[:, :, :H].sum(axis=1)
        return self.lstm.dh + d_context


class Seq2seq:
    KEYS = ("emb_src", "enc.Wx", "enc.Wh", "enc.b", "emb_tgt", "dec.Wx", "dec.Wh", "dec.b", "out.W", "out.b_out")

    def __init__(self, params, peeky=False, bug=None):
        p = [params[k] for k in self.KEYS]
        self.encoder = Encoder(*p[:4], bug=bug)
        self.decoder = (PeekyDecoder if peeky else Decoder)(*p[4:], bug=bug)
        self.softmax = TimeSoftmaxWithLoss()
        self.params = self.encoder.params + self.decoder.params
        self.grads = self.encoder.grads + self.decoder.grads

    def forward(self, xs, ts_in, ts_out):
        h = self.encoder.forward(xs)
        return self.softmax.forward(self.decoder.forward(ts_in, h), ts_out)

    def backward(self):
        self.encoder.backward(self.decoder.backward(self.softmax.backward()))

    def named_grads(self):
        return {k: g.copy() for k, g in zip(self.KEYS, self.grads)}


def make_loss(peeky=False, bug=None):
    """``loss(params, src, tgt_in, tgt_out) -> (loss, grads)`` over batch-major ids, for verify_seq2seq."""
    def seq2seq_loss(params, src, tgt_in, tgt_out):
        model = Seq2seq(params, peeky=peeky, bug=bug)
        loss = model.forward(src, tgt_in, tgt_out)
        model.backward()
        return loss, model.named_grads()
    return seq2seq_loss
