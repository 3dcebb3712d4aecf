"""Recurrent layers in the style of "Deep Learning from Scratch 2" (layer objects).

Conventions (row convention, batch-major, float64):

* Every layer keeps ``params = [Wx, Wh, b]`` and ``grads``, zero arrays of the same
  shapes allocated once and overwritten in place (``grads[0][...] = dWx``).
* Step layers ``RNN``, ``LSTM``, ``GRU``: ``forward(x, h_prev[, c_prev])`` and
  ``backward(dh_next[, dc_next]) -> (dx, dh_prev[, dc_prev])``.
* Time layers ``TimeRNN``, ``TimeLSTM``, ``TimeGRU`` ``(Wx, Wh, b, stateful=False, bug=None)``:
  ``forward(xs) -> hs`` with xs (N, T, D), hs (N, T, H); ``backward(dhs) -> dxs`` with
  dhs (N, T, H) the upstream gradient of every hidden state.  The initial state is
  ``self.h`` (and ``self.c`` for the LSTM) if ``stateful`` and set (``set_state``),
  zero otherwise; after forward ``self.h`` (``self.c``) is the last state; after
  backward ``self.dh`` is dL/dh0 and ``self.grads`` hold dWx, dWh, db summed over
  batch and time.

Cells (x = x_t, h = h_{t-1}, a block's slice of Wx, Wh, b written Wx_f, ...):

* RNN: Wx (D, H), Wh (H, H), b (H,); h_t = tanh(x Wx + h Wh + b).
* LSTM: Wx (D, 4H), Wh (H, 4H), b (4H,), blocks in order f, g, i, o;
  f, i, o sigmoid, g tanh; c_t = f * c_{t-1} + g * i, h_t = o * tanh(c_t).
* GRU: Wx (D, 3H), Wh (H, 3H), b (3H,), blocks in order z, r, h~;
  z = sigmoid(x Wx_z + h Wh_z + b_z), r = sigmoid(x Wx_r + h Wh_r + b_r),
  h~ = tanh(x Wx_h + (r * h) Wh_h + b_h)  (reset before the product),
  h_t = (1 - z) * h + z * h~  (symrnn's cell "gru-reset-before-chung").

``bug`` plants one mistake from ``_planted.CATALOGUE`` in the backward pass (see each
time layer's ``BUGS``): the tanh mistakes concern tanh(a) for the RNN, tanh(c_t) for
the LSTM and h~ for the GRU; sigmoid_deriv_missing_gate the LSTM's f and the GRU's z;
swap_gate_blocks the LSTM's i and f, the GRU's z and r.
"""
import numpy as np

from . import _planted


def sigmoid(x):
    return 1 / (1 + np.exp(-x))


class _Step:
    def __init__(self, Wx, Wh, b, bug=None):
        self.params = [Wx, Wh, b]
        self.grads = [np.zeros_like(Wx), np.zeros_like(Wh), np.zeros_like(b)]
        self.cache = None
        self.bug = bug

    def _bias_grad(self, dA):
        return dA[0] if self.bug == "bias_not_summed" else dA.sum(axis=0)


class RNN(_Step):
    def forward(self, x, h_prev):
        Wx, Wh, b = self.params
        a = h_prev @ Wh + x @ Wx + b
        self.cache = (x, h_prev, a)
        return np.tanh(a)

    def backward(self, dh_next):
        Wx, Wh, _ = self.params
        x, h_prev, a = self.cache
        h_next = np.tanh(a)
        da = dh_next * _planted.tanh_derivative(a, h_next, self.bug)
        self.grads[0][...] = x.T @ da
        self.grads[1][...] = (h_next if self.bug == "h_t_for_h_prev" else h_prev).T @ da
        self.grads[2][...] = self._bias_grad(da)
        dx = da @ Wx.T
        dh_prev = da @ (Wh if self.bug == "transposed_matrix" else Wh.T)
        return dx, dh_prev


class LSTM(_Step):
    def forward(self, x, h_prev, c_prev):
        Wx, Wh, b = self.params
        A = x @ Wx + h_prev @ Wh + b
        a_f, a_g, a_i, a_o = np.split(A, 4, axis=1)
        f, g, i, o = sigmoid(a_f), np.tanh(a_g), sigmoid(a_i), sigmoid(a_o)
        c_next = f * c_prev + g * i
        h_next = o * np.tanh(c_next)
        self.cache = (x, h_prev, c_prev, f, g, i, o, c_next)
        return h_next, c_next

    def backward(self, dh_next, dc_next):
        Wx, Wh, _ = self.params
        x, h_prev, c_prev, f, g, i, o, c_next = self.cache
        tanh_c = np.tanh(c_next)
        ds = dc_next + dh_next * o * _planted.tanh_derivative(c_next, tanh_c, self.bug)
        df = ds * c_prev * (1 if self.bug == "sigmoid_deriv_missing_gate" else f * (1 - f))
        dg = ds * i * (1 - g ** 2)
        di = ds * g * i * (1 - i)
        do = dh_next * tanh_c * o * (1 - o)
        dA = np.hstack((di, dg, df, do) if self.bug == "swap_gate_blocks" else (df, dg, di, do))
        self.grads[0][...] = x.T @ dA
        self.grads[1][...] = (o * tanh_c if self.bug == "h_t_for_h_prev" else h_prev).T @ dA
        self.grads[2][...] = self._bias_grad(dA)
        dx = dA @ Wx.T
        dh_prev = dA @ Wh.T
        dc_prev = np.zeros_like(ds) if self.bug == "cell_path_dropped" else ds * f
        return dx, dh_prev, dc_prev


class GRU(_Step):
    def forward(self, x, h_prev):
        Wx, Wh, b = self.params
        H = Wh.shape[0]
        A_zr = x @ Wx[:, :2 * H] + h_prev @ Wh[:, :2 * H] + b[:2 * H]
        z, r = sigmoid(A_zr[:, :H]), sigmoid(A_zr[:, H:])
        a_hat = x @ Wx[:, 2 * H:] + (r * h_prev) @ Wh[:, 2 * H:] + b[2 * H:]
        h_hat = np.tanh(a_hat)
        self.cache = (x, h_prev, z, r, a_hat)
        return (1 - z) * h_prev + z * h_hat

    def backward(self, dh_next):
        Wx, Wh, _ = self.params
        H = Wh.shape[0]
        x, h_prev, z, r, a_hat = self.cache
        h_hat = np.tanh(a_hat)
        da_hat = dh_next * z * _planted.tanh_derivative(a_hat, h_hat, self.bug)
        d_rh = da_hat @ Wh[:, 2 * H:].T  # gradient of r * h_prev
        da_z = dh_next * (h_hat - h_prev) * (1 if self.bug == "sigmoid_deriv_missing_gate" else z * (1 - z))
        da_r = d_rh * h_prev * r * (1 - r)
        dA_zr = np.hstack((da_r, da_z) if self.bug == "swap_gate_blocks" else (da_z, da_r))
        dA = np.hstack((dA_zr, da_hat))
        h_zr = (1 - z) * h_prev + z * h_hat if self.bug == "h_t_for_h_prev" else h_prev
        self.grads[0][...] = x.T @ dA
        self.grads[1][...] = np.hstack((h_zr.T @ dA_zr, (r * h_prev).T @ da_hat))
        self.grads[2][...] = self._bias_grad(dA)
        dx = dA @ Wx.T
        dh_prev = dh_next * (1 - z) + r * d_rh + dA_zr @ Wh[:, :2 * H].T
        return dx, dh_prev


class _TimeLayer:
    """What the time layers share: parameters, the hidden state and the backward loop."""

    step_class = None
    cell_states = 0  # 1 if the step layer also carries a cell state (LSTM)
    BUGS = _planted.RECURRENT_BUGS
    BUG_NEEDS = _planted.RECURRENT_NEEDS

    def __init__(self, Wx, Wh, b, stateful=False, bug=None):
        _planted.check_bug(bug, self.BUGS)
        self.params = [Wx, Wh, b]
        self.grads = [np.zeros_like(Wx), np.zeros_like(Wh), np.zeros_like(b)]
        self.layers = None
        self.h, self.dh = None, None
        self.stateful = stateful
        self.bug = bug

    def set_state(self, h):
        self.h = h

    def reset_state(self):
        self.h = None

    def forward(self, xs):
        N, T, _ = xs.shape
        H = self.params[1].shape[0]
        if not self.stateful or self.h is None:
            self.h = np.zeros((N, H))
        hs = np.empty((N, T, H))
        self.layers = []
        for t in range(T):
            layer = self.step_class(*self.params, bug=self.bug)
            self.h = layer.forward(xs[:, t], self.h)
            hs[:, t] = self.h
            self.layers.append(layer)
        return hs

    def backward(self, dhs):
        N, T, _ = dhs.shape
        dxs = np.zeros((N, T, self.params[0].shape[0]))
        grads = _planted.GradientSum([p.shape for p in self.params], self.bug)
        loop = self._truncated_loop if self.bug == "truncate_k" else self._full_loop
        self.dh = loop(dhs, dxs, grads)
        for i, grad in enumerate(grads.result(N, T)):
            self.grads[i][...] = grad
        return dxs

    def _zero_cell_grads(self, N, H):
        """The carried dL/dc: one zero (N, H) array for the LSTM, none for RNN and GRU."""
        return [np.zeros((N, H))] * self.cell_states

    def _full_loop(self, dhs, dxs, grads):
        """Backpropagate through all steps; fill dxs and grads, return dL/dh0."""
        N, T, H = dhs.shape
        dh, dcell = np.zeros((N, H)), self._zero_cell_grads(N, H)
        for t in reversed(range(T)):
            layer = self.layers[t]
            upstream = dhs[:, t] if self.bug == "drop_recurrent" else dhs[:, t] + dh
            dxs[:, t], dh, *dcell = layer.backward(upstream, *dcell)
            if self.bug == "message_1pct" and t == _planted.MESSAGE_STEP:
                dh = dh * _planted.MESSAGE_FACTOR
            grads.add(layer.grads, t, T)
        return dh

    def _truncated_loop(self, dhs, dxs, grads):
        """Like _full_loop, but each dhs[:, t] travels back at most TRUNCATE_K steps."""
        N, T, H = dhs.shape
        dh0 = np.zeros((N, H))
        for t in range(T):
            window = _planted.truncation_window(t)
            dh, dcell = dhs[:, t], self._zero_cell_grads(N, H)
            for s in window:
                dx, dh, *dcell = self.layers[s].backward(dh, *dcell)
                dxs[:, s] += dx
                grads.add(self.layers[s].grads, s, T)
            if window[-1] == 0:
                dh0 += dh
        return dh0


class TimeRNN(_TimeLayer):
    step_class = RNN
    BUGS = _planted.RECURRENT_BUGS + ("transposed_matrix",)
    BUG_NEEDS = {**_planted.RECURRENT_NEEDS, "transposed_matrix": "H >= 2"}


class TimeGRU(_TimeLayer):
    step_class = GRU
    BUGS = _planted.RECURRENT_BUGS + ("sigmoid_deriv_missing_gate", "swap_gate_blocks")


class TimeLSTM(_TimeLayer):
    step_class = LSTM
    cell_states = 1
    BUGS = _planted.RECURRENT_BUGS + ("cell_path_dropped", "sigmoid_deriv_missing_gate", "swap_gate_blocks")
    # With c0 = 0 the forget gate gets no gradient at t = 0.
    BUG_NEEDS = {
        **_planted.RECURRENT_NEEDS,
        "cell_path_dropped": "T >= 2",
        "sigmoid_deriv_missing_gate": "T >= 2 or not c0_is_zero",
    }

    def __init__(self, Wx, Wh, b, stateful=False, bug=None):
        super().__init__(Wx, Wh, b, stateful, bug)
        self.c = None

    def set_state(self, h, c=None):
        self.h, self.c = h, c

    def reset_state(self):
        self.h, self.c = None, None

    def forward(self, xs):
        N, T, _ = xs.shape
        H = self.params[1].shape[0]
        if not self.stateful or self.h is None:
            self.h = np.zeros((N, H))
        if not self.stateful or self.c is None:
            self.c = np.zeros((N, H))
        hs = np.empty((N, T, H))
        self.layers = []
        for t in range(T):
            layer = LSTM(*self.params, bug=self.bug)
            self.h, self.c = layer.forward(xs[:, t], self.h, self.c)
            hs[:, t] = self.h
            self.layers.append(layer)
        return hs
