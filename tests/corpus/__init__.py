"""Hand-written NumPy backprop for recurrent networks: the "user code" symrnn verifies.

Implementations (each module's docstring states its conventions):

==================  ============================================================
cs231n_rnn          ``cs231n_rnn.make(bug)``: rnn_step_forward/backward, rnn_forward/backward
cs231n_rnn_loss     the same namespace's ``temporal_affine_softmax_loss``
cs231n_lstm         ``cs231n_lstm.make(bug)``: lstm_step_forward/backward, lstm_forward/backward
dlfs2_rnn           ``dlfs2_layers.TimeRNN(Wx, Wh, b, stateful=False, bug=None)``
dlfs2_lstm          ``dlfs2_layers.TimeLSTM(...)``, gate order f, g, i, o
dlfs2_gru           ``dlfs2_layers.TimeGRU(...)``, reset before the product
minchar_rnn         ``minchar_rnn.lossFun`` / ``lossFun_clipped`` (no planted bugs)
tbptt_rnn           ``tbptt_rnn.tbptt_grads`` (no planted bugs)
==================  ============================================================

``BUGS[name]`` lists the planted mistakes (``CATALOGUE`` describes them) an
implementation can carry; ``BUG_NEEDS[name][bug]`` is a Python expression over the
sizes N, T, D, H, ``grad_max`` (largest |entry| of the correct dWx, dWh, db) and
``c0_is_zero`` that says when the mistake changes the result (see
``_planted.RECURRENT_NEEDS``); bugs missing from it always do.
``tests/corpus/check_corpus.py`` checks all of it against PyTorch.
"""
from . import cs231n_lstm, cs231n_rnn, dlfs2_layers
from ._planted import CATALOGUE, CLIP, MESSAGE_FACTOR, MESSAGE_STEP, TRUNCATE_K

BUGS = {
    "cs231n_rnn": list(cs231n_rnn.BUGS),
    "cs231n_rnn_loss": list(cs231n_rnn.BUGS),
    "cs231n_lstm": list(cs231n_lstm.BUGS),
    "dlfs2_rnn": list(dlfs2_layers.TimeRNN.BUGS),
    "dlfs2_lstm": list(dlfs2_layers.TimeLSTM.BUGS),
    "dlfs2_gru": list(dlfs2_layers.TimeGRU.BUGS),
    "minchar_rnn": [],
    "tbptt_rnn": [],
}

BUG_NEEDS = {
    "cs231n_rnn": cs231n_rnn.BUG_NEEDS,
    "cs231n_rnn_loss": cs231n_rnn.LOSS_BUG_NEEDS,
    "cs231n_lstm": cs231n_lstm.BUG_NEEDS,
    "dlfs2_rnn": dlfs2_layers.TimeRNN.BUG_NEEDS,
    "dlfs2_lstm": dlfs2_layers.TimeLSTM.BUG_NEEDS,
    "dlfs2_gru": dlfs2_layers.TimeGRU.BUG_NEEDS,
    "minchar_rnn": {},
    "tbptt_rnn": {},
}

__all__ = ["BUGS", "BUG_NEEDS", "CATALOGUE", "CLIP", "MESSAGE_FACTOR", "MESSAGE_STEP", "TRUNCATE_K"]
