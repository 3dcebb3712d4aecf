"""A chaotic forward (large weights, long sequences, more units): rounding grows step by step until
two correct implementations that round differently follow different trajectories, with different
gradients.  Such a case is not judged (said in the verdict and the notes), the first steps before
its chaos are judged in its place, and mistakes are still caught there and in the short cases (a new
user's finding: correct code was 'another function' past the chaos onset, then its gradients WRONG)."""
import pytest

import symrnn.verify as V
from corpus import cs231n_rnn
from corpus_alt import lstm32_plain, rnn_exp_stable_cosh

CHAOTIC = dict(T=300, H=16, scale=3.0)


@pytest.mark.parametrize("module, sizes", [(rnn_exp_stable_cosh, dict(T=1000, H=16, scale=3.0)),
                                           (lstm32_plain, dict(T=400, H=16, scale=4.0))],
                         ids=["rnn exp float64", "lstm float32"])
def test_correct_code_in_a_chaotic_regime_is_right_and_its_chaotic_cases_are_said(module, sizes):
    """Both were FORWARD DIFFERS (h at steps 363 and 162), then their gradients WRONG."""
    result = V.verify_layer(getattr(module, module.FORWARD), getattr(module, module.BACKWARD), module.CELL,
                            module.LAYOUT, **sizes)
    assert result.ok, str(result)
    chaotic = [c for c in result.cases if not c.judged]
    assert chaotic and "chaotic not judged" in result.verdict(), str(result)
    assert all(any(c.label in n and "chaotic" in n for n in result.notes) for c in chaotic)
    before = [c for c in result.cases if "before its chaos" in c.label]
    assert before and all(c.judged and 3 < c.T < sizes["T"] for c in before), str(result)
    assert result.forward.ok and result.forward.chaotic and "chaotic" in result.forward.message
    assert result.to_json()["cases"][0]["judged"] is False


@pytest.mark.parametrize("bug", ["truncate_k", "drop_recurrent"])
def test_mistakes_are_still_caught_in_a_chaotic_regime(bug):
    """``truncate_k`` (BPTT cut after 3 steps) is right for T <= 3: only the steps before the chaos
    of a long case catch it."""
    code = cs231n_rnn.make(bug)
    result = V.verify_layer(code.rnn_forward, code.rnn_backward, "rnn-tanh", "cs231n", **CHAOTIC)
    assert not result.ok and result.wrong, str(result)
    assert any(not c.judged for c in result.cases), str(result)
