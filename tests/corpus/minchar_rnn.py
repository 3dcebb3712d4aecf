"""Character-level vanilla RNN in the style of Karpathy's min-char-rnn.

Conventions (column convention, one sequence, float64):

* The parameters are module globals: Wxh (H, V), Whh (H, H), Why (V, H),
  bh (H, 1), by (V, 1); ``init_params(V, H, seed)`` draws them (scale 0.01, as
  min-char-rnn), or assign them directly (``minchar_rnn.Whh = ...``).
* ``lossFun(inputs, targets, hprev)``: inputs and targets are lists of T ints in
  [0, V), hprev (H, 1).  With x_t the one-hot column of inputs[t]:
  h_t = tanh(Wxh x_t + Whh h_{t-1} + bh), y_t = Why h_t + by, p_t = softmax(y_t),
  loss = -sum_t log p_t[targets[t]] (summed over the steps).
  Returns ``loss, dWxh, dWhh, dWhy, dbh, dby`` and the last hidden state h_{T-1}
  (H, 1) (min-char-rnn's ``hs[len(inputs) - 1]``; here ``hs`` starts with hprev).
* ``lossFun_clipped`` returns the same after clipping every gradient elementwise
  to [-5, 5] in place, as min-char-rnn does before its update: deliberately, not
  a bug; its gradients equal the true ones only where those lie in [-5, 5].
"""
import numpy as np

CLIP = 5.0


def init_params(V, H, seed=0):
    """Draw the global parameters for a vocabulary of V symbols and H hidden units."""
    global Wxh, Whh, Why, bh, by
    rng = np.random.default_rng(seed)
    Wxh = rng.standard_normal((H, V)) * 0.01
    Whh = rng.standard_normal((H, H)) * 0.01
    Why = rng.standard_normal((V, H)) * 0.01
    bh = np.zeros((H, 1))
    by = np.zeros((V, 1))


init_params(V=8, H=6)


def softmax(y):
    e = np.exp(y - y.max())
    return e / e.sum()


def one_hot(index, V):
    x = np.zeros((V, 1))
    x[index] = 1
    return x


def run_forward(inputs, targets, hprev):
    """The hidden states (hs[0] = hprev, hs[t + 1] = h_t), one-hot inputs, probabilities and loss."""
    xs, hs, ps = [], [hprev], []
    loss = 0.0
    for char, target in zip(inputs, targets):
        x = one_hot(char, Wxh.shape[1])
        h = np.tanh(Wxh @ x + Whh @ hs[-1] + bh)
        p = softmax(Why @ h + by)
        loss -= np.log(p[target, 0])
        xs.append(x)
        hs.append(h)
        ps.append(p)
    return xs, hs, ps, loss


def lossFun(inputs, targets, hprev):
    xs, hs, ps, loss = run_forward(inputs, targets, hprev)
    dWxh, dWhh, dWhy = np.zeros_like(Wxh), np.zeros_like(Whh), np.zeros_like(Why)
    dbh, dby = np.zeros_like(bh), np.zeros_like(by)
    dh_from_later = np.zeros_like(hprev)
    for t in reversed(range(len(inputs))):
        dy = ps[t].copy()
        dy[targets[t]] -= 1
        dWhy += dy @ hs[t + 1].T
        dby += dy
        dh = Why.T @ dy + dh_from_later
        da = (1 - hs[t + 1] ** 2) * dh
        dbh += da
        dWxh += da @ xs[t].T
        dWhh += da @ hs[t].T
        dh_from_later = Whh.T @ da
    return loss, dWxh, dWhh, dWhy, dbh, dby, hs[len(inputs)]


def lossFun_clipped(inputs, targets, hprev):
    loss, *grads, h_last = lossFun(inputs, targets, hprev)
    for dparam in grads:
        np.clip(dparam, -CLIP, CLIP, out=dparam)
    return (loss, *grads, h_last)
