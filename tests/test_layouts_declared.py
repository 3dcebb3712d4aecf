"""symrnn.models.layouts.Layout: declared layouts of hand-written code convert both ways, refuse what does not fit."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import symrnn as sr
from symrnn.errors import ShapeError, UnknownNameError
from symrnn.models.layouts import LAYOUTS, Layout, layout_for

CELLS = {"rnn-tanh": (), "lstm": ("i", "f", "g", "o"), "gru-reset-before": ("r", "z", "n")}


@settings(max_examples=40)
@given(cell=st.sampled_from(sorted(CELLS)), convention=st.sampled_from(["row", "column"]),
       stacking=st.sampled_from(["separate", "xh", "hx"]), bias_shape=st.sampled_from(["flat", "row", "column"]),
       order=st.permutations(range(4)), D=st.integers(1, 4), H=st.integers(1, 4), forget=st.sampled_from([0.0, 1.0]))
def test_declared_layouts_round_trip(cell, convention, stacking, bias_shape, order, D, H, forget):
    gates = tuple(np.array(CELLS[cell])[[i for i in order if i < len(CELLS[cell])]]) if CELLS[cell] else ()
    names = {"b": "bias", "V": "Why", "V_b": "by"}
    names.update({"W": "W"} if stacking != "separate" else {"Wx": "Wx", "Wh": "Wh"})
    layout = Layout("mine", names, gate_order=gates, convention=convention, stacking=stacking,
                    bias_shape=bias_shape, forget_bias=forget)
    model = sr.Model(cell, D=D, H=H, K=2)
    params = model.init_params(1)
    user = layout.to_user(cell, params)
    back = layout.from_user(cell, user, model.sizes)
    assert all(np.allclose(back[k], params[k], rtol=0, atol=1e-15) for k in params)  # b_f - 1 + 1
    grads = layout.from_user(cell, layout.to_user(cell, params, gradients=True), model.sizes, gradients=True)
    assert all(np.array_equal(grads[k], params[k]) for k in params)  # the forget offset moves values, not gradients


def test_stacked_weights_act_on_the_concatenation():
    model = sr.Model("rnn-tanh", D=2, H=3, K=2)
    p = model.init_params(0)
    x, h = np.arange(2.0), np.arange(3.0) - 1
    for stacking, z in (("xh", np.concatenate([x, h])), ("hx", np.concatenate([h, x]))):
        for convention in ("row", "column"):
            W = Layout("s", {"W": "W", "b": "b"}, convention=convention, stacking=stacking).to_user("rnn-tanh", p)["W"]
            a = z @ W if convention == "row" else W @ z
            assert np.allclose(a, p["U"] @ x + p["W"] @ h)


def test_presets_and_forget_bias_offset():
    tf1 = Layout("tf1", {"W": "kernel", "b": "bias"}, gate_order=("i", "g", "f", "o"), convention="row",
                 stacking="xh", forget_bias=1.0)
    model = sr.Model("lstm", D=2, H=3, K=2)
    p = model.init_params(0)
    stored = tf1.to_user("lstm", p)["bias"]
    assert np.allclose(stored[6:9], p["b_f"] - 1.0)  # TF1 adds forget_bias at run time, not stored
    assert layout_for("dlfs2", "gru-reset-before-chung").gate_order == ("z", "r", "n")
    assert set(LAYOUTS) == {"pytorch", "keras", "cs231n", "minchar", "dlfs2"}


def test_a_layout_that_does_not_fit_is_refused_with_both_shapes():
    model = sr.Model("lstm", D=2, H=3, K=2)
    user = LAYOUTS["cs231n"].to_user("lstm", model.init_params(0))
    user["Wx"] = user["Wx"].T
    with pytest.raises(ShapeError, match=r"Wx has shape \(12, 2\); expected \(2, 12\) \(cs231n layout, row convention, "
                                         r"gates \('i', 'f', 'o', 'g'\), D=2, H=3\)"):
        LAYOUTS["cs231n"].from_user("lstm", user, model.sizes)
    with pytest.raises(UnknownNameError, match=r"stacks the gates \('i', 'f'\), but cell 'lstm' has the gates"):
        Layout("half", {"Wx": "a", "Wh": "b", "b": "c"}, gate_order=("i", "f")).gates("lstm")
    with pytest.raises(UnknownNameError, match=r"convention='diagonal'; expected one of"):
        Layout("bad", {}, convention="diagonal")
