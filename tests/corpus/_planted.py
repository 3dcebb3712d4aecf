"""The catalogue of planted backprop mistakes and the pieces the corpus modules share.

Every buggy variant plants exactly one mistake in the backward pass; the forward
pass is always correct.  The constants below fix the free numbers of the catalogue.
"""
import numpy as np

TRUNCATE_K = 3
CLIP = 0.1
MESSAGE_STEP = 2
MESSAGE_FACTOR = 1.01

CATALOGUE = {
    "drop_recurrent": "the gradient arriving from step t+1 is not added to dh[:, t]; nothing crosses steps through h",
    "act_deriv_at_preact": "tanh' evaluated at the pre-activation: 1 - a**2 instead of 1 - tanh(a)**2",
    "act_deriv_missing": "the tanh derivative is left out",
    "h_t_for_h_prev": "h_t used where h_{t-1} belongs in dWh's outer product",
    "missing_first_term": "the t = 0 term is missing from dWx, dWh and db",
    "missing_last_term": "the t = T-1 term is missing from dWx, dWh and db",
    "divide_by_T": "dWx, dWh and db are divided by T",
    "divide_by_N": "dWx, dWh and db are divided by N",
    "truncate_k": f"each dL/dh_t is backpropagated through only TRUNCATE_K = {TRUNCATE_K} steps (t, t-1, ...)",
    "cell_path_dropped": "dL/dc_{t-1} is zeroed: the cell path carries no gradient across steps",
    "sigmoid_deriv_missing_gate": "the sigmoid derivative is left out on one gate (LSTM: f, GRU: z)",
    "swap_gate_blocks": "two gate blocks swapped in the stacked pre-activation gradient (LSTM: i/f, GRU: z/r)",
    "bias_not_summed": "the bias gradient is taken from example 0 instead of summed over the batch",
    "transposed_matrix": "dL/dh_{t-1} computed with Wh instead of Wh^T",
    "clip_inside": f"the running dWx, dWh, db are clipped to [-{CLIP}, {CLIP}] after every step",
    "message_1pct": f"the message dL/dh_{MESSAGE_STEP - 1} from step {MESSAGE_STEP} to step {MESSAGE_STEP - 1} "
                    f"is multiplied by {MESSAGE_FACTOR}",
}


def check_bug(bug, supported):
    """Raise ValueError unless `bug` is None or one of `supported`."""
    if bug is not None and bug not in supported:
        raise ValueError(f"unknown bug {bug!r}; expected None or one of {sorted(supported)}")


def truncation_window(t):
    """The steps t, t-1, ... (at most TRUNCATE_K, none below 0) that dL/dh_t reaches under truncate_k."""
    return range(t, max(t - TRUNCATE_K, -1), -1)


class GradientSum:
    """Running sum over time steps of the per-step parameter gradients.

    The loop-level mistakes live here: a skipped first or last term, clipping
    inside the loop, and dividing the final sums by T or N.
    """

    def __init__(self, shapes, bug):
        self.totals = [np.zeros(shape) for shape in shapes]
        self.bug = bug

    def add(self, step_grads, t, T):
        if (self.bug == "missing_first_term" and t == 0) or (self.bug == "missing_last_term" and t == T - 1):
            return
        for total, grad in zip(self.totals, step_grads):
            total += grad
            if self.bug == "clip_inside":
                np.clip(total, -CLIP, CLIP, out=total)

    def result(self, N, T):
        divisor = {"divide_by_T": T, "divide_by_N": N}.get(self.bug, 1)
        return [total / divisor for total in self.totals]


def tanh_derivative(pre, out, bug):
    """d tanh(pre) / d pre given out = tanh(pre), or its two planted wrong forms."""
    if bug == "act_deriv_at_preact":
        return 1 - pre ** 2
    if bug == "act_deriv_missing":
        return np.ones_like(out)
    return 1 - out ** 2


# Mistakes that every recurrent cell of the corpus can carry (backward loop and tanh step).
RECURRENT_BUGS = (
    "drop_recurrent",
    "act_deriv_at_preact",
    "act_deriv_missing",
    "h_t_for_h_prev",
    "missing_first_term",
    "missing_last_term",
    "divide_by_T",
    "divide_by_N",
    "truncate_k",
    "bias_not_summed",
    "clip_inside",
    "message_1pct",
)

# When a mistake changes the returned gradients (layer mode: dx, dh0 and the parameter
# gradients), as a Python expression over the sizes N, T, D, H and
#   grad_max    -- the largest |entry| of the correct dWx, dWh, db,
#   c0_is_zero  -- whether the LSTM's initial cell state is zero.
# The mistake is visible (for generic data) exactly when the expression holds;
# for clip_inside the condition is sufficient only (partial sums may exceed CLIP
# even when the final gradients do not).  Mistakes not listed are always visible.
RECURRENT_NEEDS = {
    "drop_recurrent": "T >= 2",
    "divide_by_T": "T >= 2",
    "divide_by_N": "N >= 2",
    "truncate_k": f"T > {TRUNCATE_K}",
    "bias_not_summed": "N >= 2",
    "clip_inside": f"grad_max > {CLIP}",
    "message_1pct": f"T > {MESSAGE_STEP}",
}
