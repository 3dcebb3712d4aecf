"""An LSTM as a class, in the style of from-scratch tutorials: one weight matrix per gate acting on
the concatenation [h, x], a bias per gate, one example at a time with column vectors, the
gradients left in d<name> attributes by backward()."""
import numpy as np

BUG = None  # "output-gate-derivative-missing": do written without o (1 - o)


def sigmoid(a):
    return 1.0 / (1.0 + np.exp(-a))


class LSTM:
    def __init__(self, input_size, hidden_size, seed=0):
        rng = np.random.default_rng(seed)
        self.hidden_size = hidden_size
        k = 1.0 / np.sqrt(hidden_size)
        self.Wf, self.Wi, self.Wc, self.Wo = (rng.uniform(-k, k, (hidden_size, hidden_size + input_size))
                                              for _ in range(4))
        self.bf, self.bi, self.bc, self.bo = (np.zeros((hidden_size, 1)) for _ in range(4))

    def forward(self, inputs, h_prev, c_prev):
        """inputs: a sequence of (input_size, 1) columns; returns the hidden states, (T, hidden_size, 1)."""
        self.steps, hs = [], []
        h, c = h_prev, c_prev
        for x in inputs:
            z = np.vstack((h, x))
            f = sigmoid(self.Wf @ z + self.bf)
            i = sigmoid(self.Wi @ z + self.bi)
            c_bar = np.tanh(self.Wc @ z + self.bc)
            o = sigmoid(self.Wo @ z + self.bo)
            c_new = f * c + i * c_bar
            h = o * np.tanh(c_new)
            self.steps.append((z, c, f, i, c_bar, o, c_new))
            c = c_new
            hs.append(h)
        return np.array(hs)

    def backward(self, dhs):
        """dhs: dL/dh_t, (T, hidden_size, 1); returns dL/dinputs, dL/dh_prev, dL/dc_prev."""
        H = self.hidden_size
        for name in ("Wf", "Wi", "Wc", "Wo", "bf", "bi", "bc", "bo"):
            setattr(self, "d" + name, np.zeros_like(getattr(self, name)))
        dxs = []
        dh_next, dc_next = np.zeros((H, 1)), np.zeros((H, 1))
        for t in reversed(range(len(self.steps))):
            z, c_prev, f, i, c_bar, o, c = self.steps[t]
            dh = dhs[t] + dh_next
            tc = np.tanh(c)
            do = dh * tc * (1 if BUG == "output-gate-derivative-missing" else o * (1 - o))
            dc = dc_next + dh * o * (1 - tc ** 2)
            df, di, dc_bar = dc * c_prev * f * (1 - f), dc * c_bar * i * (1 - i), dc * i * (1 - c_bar ** 2)
            dz = np.zeros_like(z)
            for gate, da in (("f", df), ("i", di), ("c", dc_bar), ("o", do)):
                getattr(self, "dW" + gate)[...] += da @ z.T
                getattr(self, "db" + gate)[...] += da
                dz += getattr(self, "W" + gate).T @ da
            dh_next, dc_next = dz[:H], dc * f
            dxs.append(dz[H:])
        return np.array(dxs[::-1]), dh_next, dc_next
