"""Self-check of the corpus (a script, not collected by pytest).

For every implementation: the correct code against PyTorch autograd in float64 on
random sizes (N, D, H in 1..5, T in 1..8; V in 2..5 where there is a vocabulary),
and every planted bug against the correct code.  A bug must change the result
(relative difference above VISIBLE) wherever ``BUG_NEEDS`` says it does, and leave
it unchanged (below TOLERANCE) where it says it does not.

    .venv/bin/python tests/corpus/check_corpus.py [--trials 40] [--seed 0]
"""
import argparse
import functools
import sys
from pathlib import Path

import numpy as np
import torch

if __package__ in (None, ""):  # run as a file: make the corpus package importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from corpus import BUG_NEEDS, BUGS, cs231n_lstm, cs231n_rnn, dlfs2_layers, minchar_rnn, tbptt_rnn  # noqa: E402

TOLERANCE = 1e-12  # correct code vs autograd, and a bug where it must not show
VISIBLE = 1e-9  # smallest relative change a visible bug must cause


# ---------------------------------------------------------------- numerics

def rel_diff(got, want):
    """max over the keys of max|got - want| / max|want| (absolute where want is all zero)."""
    worst = 0.0
    for key, expected in want.items():
        actual, expected = np.asarray(got[key]), np.asarray(expected)
        if actual.shape != expected.shape:
            raise AssertionError(f"{key}: shape {actual.shape}, expected {expected.shape}")
        error, scale = np.abs(actual - expected).max(), np.abs(expected).max()
        worst = max(worst, error / scale if scale > 0 else error)
    return worst


def leaves(data, names):
    return {name: torch.tensor(data[name], dtype=torch.float64, requires_grad=True) for name in names}


def autograd(outputs, loss, wrt):
    """The forward outputs as arrays plus d loss / d leaf for every leaf, keyed "d" + name."""
    grads = torch.autograd.grad(loss, list(wrt.values()))
    result = {key: value.detach().numpy() for key, value in outputs.items()}
    result.update({"d" + name: grad.numpy() for name, grad in zip(wrt, grads)})
    return result


def normal(rng, *shape, scale=1.0):
    return rng.standard_normal(shape) * scale


def draw_sizes(rng):
    return {"N": int(rng.integers(1, 6)), "T": int(rng.integers(1, 9)),
            "D": int(rng.integers(1, 6)), "H": int(rng.integers(1, 6))}


def draw_layer_data(rng, gates):
    """Sizes, x, h0, Wx, Wh, b (weights for `gates` stacked blocks) and the upstream dh."""
    s = draw_sizes(rng)
    N, T, D, H = s["N"], s["T"], s["D"], s["H"]
    return {"sizes": s, "x": normal(rng, N, T, D), "h0": normal(rng, N, H),
            "Wx": normal(rng, D, gates * H, scale=0.6), "Wh": normal(rng, H, gates * H, scale=0.6),
            "b": normal(rng, gates * H, scale=0.3), "dh": normal(rng, N, T, H)}


# ---------------------------------------------------------------- PyTorch cells (row convention)

def torch_rnn_step(x, h, Wx, Wh, b):
    return (torch.tanh(x @ Wx + h @ Wh + b),)


def torch_lstm_step(x, h, c, Wx, Wh, b, order):
    blocks = dict(zip(order, torch.chunk(x @ Wx + h @ Wh + b, 4, dim=1)))
    i, f, o, g = (torch.sigmoid(blocks["i"]), torch.sigmoid(blocks["f"]),
                  torch.sigmoid(blocks["o"]), torch.tanh(blocks["g"]))
    c = f * c + i * g
    return o * torch.tanh(c), c


def torch_gru_step(x, h, Wx, Wh, b):
    """Blocks z, r, h~; reset before the product; h_t = (1 - z) h + z h~."""
    H = h.shape[1]
    (Wx_z, Wx_r, Wx_h), (Wh_z, Wh_r, Wh_h), (b_z, b_r, b_h) = (p.split(H, dim=-1) for p in (Wx, Wh, b))
    z = torch.sigmoid(x @ Wx_z + h @ Wh_z + b_z)
    r = torch.sigmoid(x @ Wx_r + h @ Wh_r + b_r)
    h_hat = torch.tanh(x @ Wx_h + (r * h) @ Wh_h + b_h)
    return ((1 - z) * h + z * h_hat,)


def torch_unroll(step, x, state, params):
    """Hidden states (N, T, H) of `step` run over x (N, T, D) from `state`."""
    hs = []
    for t in range(x.shape[1]):
        state = step(x[:, t], *state, *params)
        hs.append(state[0])
    return torch.stack(hs, dim=1)


def torch_layer_oracle(step, data, initial_cell=None):
    """Hidden states and the gradients of sum(h * dh) w.r.t. x, h0, Wx, Wh, b."""
    p = leaves(data, ["x", "h0", "Wx", "Wh", "b"])
    state = (p["h0"],) if initial_cell is None else (p["h0"], torch.tensor(initial_cell))
    h = torch_unroll(step, p["x"], state, (p["Wx"], p["Wh"], p["b"]))
    return autograd({"h": h}, (h * torch.tensor(data["dh"])).sum(), p)


# ---------------------------------------------------------------- implementations under check

class Case:
    """One implementation: how to draw data, run it (optionally with a bug) and its oracle."""

    name = ""
    forward_keys = ("h",)
    must_occur = None  # optional (label, predicate on data): must hold in at least one trial

    @property
    def bugs(self):
        return BUGS.get(self.name, [])

    def env(self, data, correct):
        """The names BUG_NEEDS expressions are evaluated with."""
        grad_max = max(np.abs(correct[key]).max() for key in ("dWx", "dWh", "db"))
        return {**data["sizes"], "grad_max": grad_max, "c0_is_zero": data.get("c0") is None}


class Cs231nRnnStep(Case):
    name = "cs231n_rnn (step functions)"
    forward_keys = ("next_h",)

    def draw(self, rng):
        data = draw_layer_data(rng, gates=1)
        data["x"], data["dh"] = data["x"][:, 0], data["dh"][:, 0]
        return data

    def run(self, data, bug):
        next_h, cache = cs231n_rnn.rnn_step_forward(data["x"], data["h0"], data["Wx"], data["Wh"], data["b"])
        dx, dprev_h, dWx, dWh, db = cs231n_rnn.rnn_step_backward(data["dh"], cache)
        return {"next_h": next_h, "dx": dx, "dh0": dprev_h, "dWx": dWx, "dWh": dWh, "db": db}

    def oracle(self, data):
        p = leaves(data, ["x", "h0", "Wx", "Wh", "b"])
        (next_h,) = torch_rnn_step(p["x"], p["h0"], p["Wx"], p["Wh"], p["b"])
        return autograd({"next_h": next_h}, (next_h * torch.tensor(data["dh"])).sum(), p)


class Cs231nRnn(Case):
    name = "cs231n_rnn"

    def draw(self, rng):
        return draw_layer_data(rng, gates=1)

    def run(self, data, bug):
        layer = cs231n_rnn.make(bug)
        h, cache = layer.rnn_forward(data["x"], data["h0"], data["Wx"], data["Wh"], data["b"])
        dx, dh0, dWx, dWh, db = layer.rnn_backward(data["dh"], cache)
        return {"h": h, "dx": dx, "dh0": dh0, "dWx": dWx, "dWh": dWh, "db": db}

    def oracle(self, data):
        return torch_layer_oracle(torch_rnn_step, data)


class Cs231nRnnLoss(Case):
    name = "cs231n_rnn_loss"
    forward_keys = ("loss",)

    def draw(self, rng):
        data = draw_layer_data(rng, gates=1)
        (N, T), H, V = data["dh"].shape[:2], data["sizes"]["H"], int(rng.integers(2, 6))
        data["sizes"]["V"] = V
        data["W_vocab"], data["b_vocab"] = normal(rng, H, V), normal(rng, V, scale=0.3)
        data["y"] = rng.integers(0, V, (N, T))
        data["mask"] = None if rng.random() < 0.5 else padding_mask(rng, N, T)
        return data

    def run(self, data, bug):
        params = {key: data[key] for key in ("Wx", "Wh", "b", "W_vocab", "b_vocab")}
        loss, grads = cs231n_rnn.make(bug).temporal_affine_softmax_loss(
            params, data["x"], data["h0"], data["y"], data["mask"])
        return {"loss": loss, **{"d" + key: grad for key, grad in grads.items()}}

    def oracle(self, data):
        p = leaves(data, ["Wx", "Wh", "b", "W_vocab", "b_vocab"])
        x, h0 = torch.tensor(data["x"]), torch.tensor(data["h0"])
        h = torch_unroll(torch_rnn_step, x, (h0,), (p["Wx"], p["Wh"], p["b"]))
        log_probs = torch.log_softmax(h @ p["W_vocab"] + p["b_vocab"], dim=2)
        picked = log_probs.gather(2, torch.tensor(data["y"])[:, :, None])[:, :, 0]
        mask = torch.ones_like(picked) if data["mask"] is None else torch.tensor(data["mask"], dtype=torch.float64)
        loss = -(picked * mask).sum() / x.shape[0]
        return autograd({"loss": loss}, loss, p)


def padding_mask(rng, N, T):
    """Captions padded at the end: sequence n is real for its first L_n steps; one is full length."""
    lengths = rng.integers(1, T + 1, N)
    lengths[rng.integers(N)] = T
    return np.arange(T)[None, :] < lengths[:, None]


class Cs231nLstmStep(Case):
    name = "cs231n_lstm (step functions)"
    forward_keys = ("next_h", "next_c")

    def draw(self, rng):
        data = draw_layer_data(rng, gates=4)
        N, H = data["h0"].shape
        data["x"], data["dh"] = data["x"][:, 0], data["dh"][:, 0]
        data["c0"], data["dc"] = normal(rng, N, H), normal(rng, N, H)
        return data

    def run(self, data, bug):
        next_h, next_c, cache = cs231n_lstm.lstm_step_forward(
            data["x"], data["h0"], data["c0"], data["Wx"], data["Wh"], data["b"])
        dx, dprev_h, dprev_c, dWx, dWh, db = cs231n_lstm.lstm_step_backward(data["dh"], data["dc"], cache)
        return {"next_h": next_h, "next_c": next_c, "dx": dx, "dh0": dprev_h, "dc0": dprev_c,
                "dWx": dWx, "dWh": dWh, "db": db}

    def oracle(self, data):
        p = leaves(data, ["x", "h0", "c0", "Wx", "Wh", "b"])
        next_h, next_c = torch_lstm_step(p["x"], p["h0"], p["c0"], p["Wx"], p["Wh"], p["b"], order="ifog")
        loss = (next_h * torch.tensor(data["dh"])).sum() + (next_c * torch.tensor(data["dc"])).sum()
        return autograd({"next_h": next_h, "next_c": next_c}, loss, p)


class Cs231nLstm(Case):
    name = "cs231n_lstm"

    def draw(self, rng):
        return draw_layer_data(rng, gates=4)

    def run(self, data, bug):
        layer = cs231n_lstm.make(bug)
        h, cache = layer.lstm_forward(data["x"], data["h0"], data["Wx"], data["Wh"], data["b"])
        dx, dh0, dWx, dWh, db = layer.lstm_backward(data["dh"], cache)
        return {"h": h, "dx": dx, "dh0": dh0, "dWx": dWx, "dWh": dWh, "db": db}

    def oracle(self, data):
        step = functools.partial(torch_lstm_step, order="ifog")
        return torch_layer_oracle(step, data, initial_cell=np.zeros_like(data["h0"]))


class Dlfs2(Case):
    """A DLFS2 time layer, stateful, started from a random h0 (and for the LSTM c0 random or zero)."""

    def __init__(self, name, layer_class, gates, torch_step):
        self.name, self.layer_class, self.gates, self.torch_step = name, layer_class, gates, torch_step

    def draw(self, rng):
        data = draw_layer_data(rng, self.gates)
        if self.layer_class is dlfs2_layers.TimeLSTM and rng.random() < 0.5:
            data["c0"] = normal(rng, *data["h0"].shape)
        return data

    def run(self, data, bug):
        layer = self.layer_class(data["Wx"].copy(), data["Wh"].copy(), data["b"].copy(), stateful=True, bug=bug)
        if "c0" in data:
            layer.set_state(data["h0"], data["c0"])
        else:
            layer.set_state(data["h0"])
        hs = layer.forward(data["x"])
        dxs = layer.backward(data["dh"])
        dWx, dWh, db = layer.grads
        return {"h": hs, "dx": dxs, "dh0": layer.dh, "dWx": dWx, "dWh": dWh, "db": db}

    def oracle(self, data):
        if self.layer_class is not dlfs2_layers.TimeLSTM:
            return torch_layer_oracle(self.torch_step, data)
        return torch_layer_oracle(self.torch_step, data, initial_cell=data.get("c0", np.zeros_like(data["h0"])))


class MinChar(Case):
    """lossFun on one sequence; half the sequences have a constant target (so clipping bites)."""

    name = "minchar_rnn"
    forward_keys = ("loss", "h_last")

    def __init__(self, clipped=False):
        self.clipped = clipped
        if clipped:
            self.name = "minchar_rnn (lossFun_clipped)"
            self.must_occur = ("clipping active", self.clipping_active)

    def draw(self, rng):
        s = draw_sizes(rng)
        T, H, V = s["T"], s["H"], int(rng.integers(2, 6))
        targets = [int(rng.integers(V))] * T if rng.random() < 0.5 else rng.integers(0, V, T).tolist()
        return {"sizes": {"T": T, "H": H, "V": V}, "inputs": rng.integers(0, V, T).tolist(), "targets": targets,
                "hprev": normal(rng, H, 1), "Wxh": normal(rng, H, V), "Whh": normal(rng, H, H, scale=0.6),
                "Why": normal(rng, V, H), "bh": normal(rng, H, 1, scale=0.3), "by": normal(rng, V, 1, scale=0.3)}

    def run(self, data, bug):
        for name in ("Wxh", "Whh", "Why", "bh", "by"):
            setattr(minchar_rnn, name, data[name])
        loss_fun = minchar_rnn.lossFun_clipped if self.clipped else minchar_rnn.lossFun
        loss, dWxh, dWhh, dWhy, dbh, dby, h_last = loss_fun(data["inputs"], data["targets"], data["hprev"])
        return {"loss": loss, "dWxh": dWxh, "dWhh": dWhh, "dWhy": dWhy, "dbh": dbh, "dby": dby, "h_last": h_last}

    def oracle(self, data):
        p = leaves(data, ["Wxh", "Whh", "Why", "bh", "by"])
        V = data["sizes"]["V"]
        h, loss = torch.tensor(data["hprev"]), 0
        for char, target in zip(data["inputs"], data["targets"]):
            x = torch.zeros(V, 1, dtype=torch.float64)
            x[char] = 1
            h = torch.tanh(p["Wxh"] @ x + p["Whh"] @ h + p["bh"])
            loss = loss - torch.log_softmax(p["Why"] @ h + p["by"], dim=0)[target, 0]
        result = autograd({"loss": loss, "h_last": h}, loss, p)
        if self.clipped:
            for name in p:
                result["d" + name] = np.clip(result["d" + name], -minchar_rnn.CLIP, minchar_rnn.CLIP)
        return result

    @staticmethod
    def clipping_active(data):
        unclipped = MinChar().oracle(data)
        return any(np.abs(unclipped["d" + name]).max() > minchar_rnn.CLIP for name in ("Wxh", "Whh", "Why", "bh", "by"))


class Tbptt(Case):
    name = "tbptt_rnn"
    forward_keys = ()

    def draw(self, rng):
        s = draw_sizes(rng)
        N, T, D, H, O = s["N"], s["T"], s["D"], s["H"], int(rng.integers(1, 6))
        return {"sizes": s, "k": int(rng.integers(1, T + 2)), "x": normal(rng, T, D, N), "y": normal(rng, T, O, N),
                "h0": normal(rng, H, N), "Wxh": normal(rng, H, D, scale=0.6), "Whh": normal(rng, H, H, scale=0.6),
                "bh": normal(rng, H, 1, scale=0.3), "Why": normal(rng, O, H), "by": normal(rng, O, 1, scale=0.3)}

    def run(self, data, bug):
        params = {name: data[name] for name in ("Wxh", "Whh", "bh", "Why", "by")}
        grads = tbptt_rnn.tbptt_grads(data["x"], data["y"], data["h0"], params, data["k"])
        return {"d" + name: grad for name, grad in grads.items()}

    def oracle(self, data):
        p = leaves(data, ["Wxh", "Whh", "bh", "Why", "by"])
        x, y, k = torch.tensor(data["x"]), torch.tensor(data["y"]), data["k"]
        h, loss = torch.tensor(data["h0"]), 0
        for t in range(len(x)):
            if t % k == 0:
                h = h.detach()
            h = torch.tanh(p["Wxh"] @ x[t] + p["Whh"] @ h + p["bh"])
            loss = loss + 0.5 * ((p["Why"] @ h + p["by"] - y[t]) ** 2).sum()
        return autograd({}, loss, p)


CASES = [
    Cs231nRnnStep(), Cs231nRnn(), Cs231nRnnLoss(), Cs231nLstmStep(), Cs231nLstm(),
    Dlfs2("dlfs2_rnn", dlfs2_layers.TimeRNN, 1, torch_rnn_step),
    Dlfs2("dlfs2_lstm", dlfs2_layers.TimeLSTM, 4, functools.partial(torch_lstm_step, order="fgio")),
    Dlfs2("dlfs2_gru", dlfs2_layers.TimeGRU, 3, torch_gru_step),
    MinChar(), MinChar(clipped=True), Tbptt(),
]


# ---------------------------------------------------------------- the check

class BugRecord:
    """Relative differences of one bug from the correct code, split by what BUG_NEEDS predicts."""

    def __init__(self, need):
        self.need = need
        self.visible, self.hidden = [], []

    def add(self, expected_visible, diff):
        (self.visible if expected_visible else self.hidden).append(diff)

    def failures(self):
        problems = []
        if self.visible and min(self.visible) <= VISIBLE:
            problems.append(f"not visible though '{self.need}' holds (min diff {min(self.visible):.1e})")
        if self.hidden and "grad_max" not in self.need and max(self.hidden) >= TOLERANCE:
            problems.append(f"visible though '{self.need}' fails (max diff {max(self.hidden):.1e})")
        if not self.visible:
            problems.append("never drawn where it should be visible")
        return problems


def check_case(case, trials, rng):
    """Run the trials; return the worst error against PyTorch, the bug records, failures and a note."""
    worst, occurrences, failures = 0.0, 0, []
    records = {bug: BugRecord(BUG_NEEDS[case.name].get(bug, "True")) for bug in case.bugs}
    for _ in range(trials):
        data = case.draw(rng)
        correct = case.run(data, None)
        worst = max(worst, rel_diff(correct, case.oracle(data)))
        if case.must_occur:
            occurrences += case.must_occur[1](data)
        for bug, record in records.items():
            buggy = case.run(data, bug)
            if any(not np.array_equal(buggy[key], correct[key]) for key in case.forward_keys):
                failures.append(f"{bug}: the forward pass changed")
            needs_hold = eval(record.need, {}, case.env(data, correct))  # a BUG_NEEDS expression
            record.add(bool(needs_hold), rel_diff(buggy, correct))
    if worst >= TOLERANCE:
        failures.append(f"correct code differs from autograd by {worst:.1e}")
    failures += [f"{bug}: {problem}" for bug, record in records.items() for problem in record.failures()]
    note = ""
    if case.must_occur:
        note = f", {case.must_occur[0]} in {occurrences}/{trials} trials"
        if occurrences == 0:
            failures.append(f"{case.must_occur[0]} in no trial")
    return worst, records, failures, note


def print_report(case, trials, worst, records, note):
    print(f"\n{case.name}: correct vs autograd, max rel err {worst:.1e} over {trials} trials{note}")
    if not records:
        return
    print(f"  {'':<55}{'where the need holds':>27}{'where it fails':>17}")
    print(f"  {'bug':<28}{'needs (BUG_NEEDS)':<27}{'trials':>7}{'min diff':>10}{'max diff':>10}"
          f"{'trials':>7}{'max diff':>10}")
    for bug, r in records.items():
        visible = f"{len(r.visible):>7}{min(r.visible):>10.1e}{max(r.visible):>10.1e}" if r.visible else ""
        hidden = f"{len(r.hidden):>7}{max(r.hidden):>10.1e}" if r.hidden else ""
        print(f"  {bug:<28}{r.need:<27}{visible:<27}{hidden}")


def check_unknown_bugs_rejected():
    """Every factory refuses a bug it does not carry."""
    W = np.zeros((1, 1))
    attempts = [
        ("cs231n_rnn.make", cs231n_rnn.make, "cell_path_dropped"),
        ("cs231n_lstm.make", cs231n_lstm.make, "transposed_matrix"),
        ("TimeRNN", lambda bug: dlfs2_layers.TimeRNN(W, W, W[0], bug=bug), "swap_gate_blocks"),
        ("TimeGRU", lambda bug: dlfs2_layers.TimeGRU(W, W, W[0], bug=bug), "cell_path_dropped"),
        ("TimeLSTM", lambda bug: dlfs2_layers.TimeLSTM(W, W, W[0], bug=bug), "no_such_bug"),
    ]
    failures = []
    for name, factory, bug in attempts:
        try:
            factory(bug)
            failures.append(f"{name} accepted {bug!r}")
        except ValueError:
            pass
    return failures


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=40)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    failures = check_unknown_bugs_rejected()
    for case in CASES:
        worst, records, case_failures, note = check_case(case, args.trials, rng)
        print_report(case, args.trials, worst, records, note)
        failures += [f"{case.name}: {failure}" for failure in case_failures]
    print("\nFAILURES:\n  " + "\n  ".join(failures) if failures else "\nall checks passed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
