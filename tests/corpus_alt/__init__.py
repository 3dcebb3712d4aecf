"""Correct hand-written backprop for recurrent networks, each in a legitimately different
floating-point formulation: the verifier must accept every one of them (issue 19).

Every module is one implementation and declares, as module-level constants, what a test needs
to drive it without knowing it:

``CELL``         the symrnn cell it computes (``rnn-tanh``, ``lstm``, ``gru``, ``gru-reset-before``)
``LAYOUT``       the layout preset (``cs231n``, ``pytorch``, ``keras``)
``MODE``         ``layer`` (``FORWARD``/``BACKWARD`` name the functions), ``step`` (the same,
                 one step) or ``loss`` (``LOSS`` names ``loss(params, x, h0, y, mask)``;
                 ``LOSS_OPTIONS`` the declared reduction and mask)
``SIGNATURE``    ``None`` (the preset's calling convention) or the four role tuples of a
                 ``symrnn.verify.Signature`` (forward args, forward returns, backward args,
                 backward returns)
``DTYPE``        ``float64``, or ``float32`` when the code computes and returns float32
``FORMULATION``  one line: what is written differently from the textbook

The modules import nothing from symrnn.  ``PLANTABLE`` lists the ones whose backward accepts
``plant=(t, factor)``: the dL/dh message carried from step t to step t-1 (0-based) is multiplied
by ``factor``, a planted error for the sensitivity tests.  ``tests/test_corpus_alt.py`` proves
every implementation against PyTorch autograd and central differences, independently of symrnn.
"""
import importlib

NAMES = (
    # tanh RNN, CS231n layer functions, float64
    "rnn_exp_clip", "rnn_exp_stable_cosh", "rnn_sigmoid2", "rnn_retanh_preact", "rnn_concat_xh",
    "rnn_einsum_after", "rnn_forward_order", "rnn_outer_per_example", "rnn_fsum", "rnn_inplace_buffers",
    "rnn_pairwise_stack",
    # tanh RNN, CS231n step functions and loss mode, float64
    "rnn_step_exp_stable", "rnn_step_sigmoid2", "rnn_loss_exp_logsumexp", "rnn_loss_concat_einsum",
    # tanh RNN, float32
    "rnn32_plain", "rnn32_exp_stable", "rnn32_concat", "rnn32_step",
    # LSTM, CS231n, float64
    "lstm_sigmoid_via_tanh", "lstm_logaddexp", "lstm_stable_branches_preact", "lstm_concat_xh",
    "lstm_einsum_forward_order", "lstm_inplace_buffers", "lstm_outer_per_example", "lstm_step_exp",
    "lstm_loss_sigtanh",
    # LSTM, float32; LSTM in PyTorch's layout
    "lstm32_plain", "lstm32_sigtanh_concat", "lstm_torch_layout",
    # GRU: PyTorch's layout (reset after), Keras's layout (reset_after=False)
    "gru_torch_plain", "gru_torch_exp_preact", "gru_torch32", "gru_keras_concat", "gru_keras32",
)

PLANTABLE = ("rnn_exp_clip", "lstm_sigmoid_via_tanh", "rnn32_plain", "lstm32_plain")

IMPLEMENTATIONS = {name: importlib.import_module(f"{__name__}.{name}") for name in NAMES}

__all__ = ["IMPLEMENTATIONS", "NAMES", "PLANTABLE"]
