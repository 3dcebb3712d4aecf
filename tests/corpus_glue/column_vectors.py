"""An LSTM written one example at a time with column vectors (a textbook's notation: W x)."""
import numpy as np

BUG = None  # "cell-path-dropped": dL/dc_t does not receive what step t + 1 sends back through c


def sigmoid(a):
    return 1.0 / (1.0 + np.exp(-a))


def lstm_forward(xs, h0, Wx, Wh, b):
    """xs: (T, D, 1); h0: (H, 1); Wx: (4H, D), Wh: (4H, H), b: (4H, 1) stacking the gates i, f, o, g."""
    H = h0.shape[0]
    h, c = h0, np.zeros_like(h0)
    hs, cache = [], []
    for x in xs:
        a = Wx @ x + Wh @ h + b
        i, f, o, g = sigmoid(a[:H]), sigmoid(a[H:2 * H]), sigmoid(a[2 * H:3 * H]), np.tanh(a[3 * H:])
        c_prev, h_prev = c, h
        c = f * c + i * g
        h = o * np.tanh(c)
        hs.append(h)
        cache.append((x, h_prev, c_prev, i, f, o, g, c))
    return np.array(hs), (cache, Wx, Wh)


def lstm_backward(dhs, cache):
    steps, Wx, Wh = cache
    H = Wh.shape[1]
    dWx, dWh, db = np.zeros_like(Wx), np.zeros_like(Wh), np.zeros((4 * H, 1))
    dxs = np.zeros((len(steps), Wx.shape[1], 1))
    dh_next, dc_next = np.zeros((H, 1)), np.zeros((H, 1))
    for t in reversed(range(len(steps))):
        x, h_prev, c_prev, i, f, o, g, c = steps[t]
        dh = dhs[t] + dh_next
        tc = np.tanh(c)
        dc = dc_next + dh * o * (1 - tc ** 2)
        da = np.vstack((dc * g * i * (1 - i), dc * c_prev * f * (1 - f), dh * tc * o * (1 - o), dc * i * (1 - g * g)))
        dWx += da @ x.T
        dWh += da @ h_prev.T
        db += da
        dxs[t] = Wx.T @ da
        dh_next, dc_next = Wh.T @ da, (0 * dc if BUG == 'cell-path-dropped' else dc * f)
    return dxs, dh_next, dWx, dWh, db
