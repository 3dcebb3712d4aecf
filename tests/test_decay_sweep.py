"""Sweeps (local, any Executor, a Dask LocalCluster), per-lag gradients, the report folder and the CLI."""
import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

import symrnn as sr
from symrnn.cli import main
from symrnn.decay.gradients import gate_of_params, gradient_by_lag
from symrnn.decay.report import write_report
from symrnn.decay.sweep import sweep
from symrnn.decay.weights import make_params
from symrnn.errors import UnknownNameError

GRID = dict(cells=["rnn-tanh", "lstm"], scales=[0.5, 2.0], seeds=[0, 1], H=3, D=2, T=60, grad_T=8, progress=False)


@pytest.fixture(scope="module")
def inline():
    return sweep(max_workers=1, **GRID)


def _same(a, b):
    assert [(t.cell_name, t.scale, t.seed) for t in a.tasks] == [(t.cell_name, t.scale, t.seed) for t in b.tasks]
    for p, q in zip(a.profiles, b.profiles):
        assert np.array_equal(p.exponents, q.exponents)
        assert np.array_equal(p.log_spectral, q.log_spectral)


def test_sweep_on_any_executor_gives_the_inline_results(inline):
    with ThreadPoolExecutor(2) as pool:
        _same(inline, sweep(executor=pool, **GRID))


def test_sweep_on_a_dask_local_cluster(inline):
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=1, threads_per_worker=2, processes=False,
                                  dashboard_address=None) as cluster, distributed.Client(cluster) as client:
        result = sweep(executor=client.get_executor(), **GRID)
    _same(inline, result)


def test_sweep_default_process_pool(inline):
    _same(inline, sweep(max_workers=2, **GRID))


def test_sweep_spread_over_seeds(inline):
    tops = [p.top_exponent for t, p, _ in inline.rows() if t.cell_name == "lstm" and t.scale == 0.5]
    assert len(tops) == 2 and tops[0] != tops[1]
    assert all(p.exponents.shape == (6,) for t, p, _ in inline.rows() if t.cell_name == "lstm")


def test_sweep_refuses_unknown_cells_and_bad_k():
    with pytest.raises(UnknownNameError, match="Unknown cell 'lsmt'"):
        sweep(["lsmt"], [1.0], progress=False)
    with pytest.raises(ValueError, match="state of 'gru' has size 3"):
        sweep(["gru"], [1.0], H=3, k=4, progress=False)


@pytest.mark.parametrize("cell", ["rnn-tanh", "lstm", "gru", "gru-reset-before"])
def test_gradient_by_lag_sums_to_the_full_gradient(cell):
    model = sr.Model(cell, D=2, H=3, loss="upstream", architecture="many-to-one")
    params = make_params(model, "xavier", 1.2, seed=0)
    x = np.random.default_rng(0).normal(size=(12, 1, 2))
    g = np.array([0.6, -0.8, 0.0])
    r = gradient_by_lag(model, params, x, g=g)
    _, full = model.loss_and_grads(params, x, g.reshape(1, 1, 3))
    for name in params:
        assert np.allclose(r.grads[name], full[name], rtol=1e-12, atol=1e-15)
        assert r.totals[name] == pytest.approx(np.linalg.norm(full[name]), rel=1e-12)
    gates = set(gate_of_params(model.cell).values())
    assert set(r.gates) == gates
    assert all(abs(r.share(k).sum() - 1) < 1e-12 for k in r.gates if r.gates[k].sum() > 0)


def test_gates_of_the_lstm_and_gru():
    assert gate_of_params(sr.Model("lstm", D=1, H=1, loss="upstream").cell)["W_f"] == "f"
    gru = gate_of_params(sr.Model("gru", D=1, H=1, loss="upstream").cell)
    assert gru["b_hn"] == "n" and gru["U_z"] == "z"


def test_report_folder(inline, tmp_path):
    paths = write_report(inline, tmp_path / "decay")
    for key in ("norms_figure", "spectrum_figure", "rate_map", "paths_figure", "gradient_figure"):
        assert paths[key].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    md = paths["markdown"].read_text()
    assert "natural log per step" in md and "![Gradient norm against lag](norms_vs_lag.png)" in md
    summary = json.loads(paths["json"].read_text())
    assert summary["units"] == "natural log per step"
    rates = {(r["cell"], r["scale"]): r for r in summary["rates"]}
    assert rates[("rnn-tanh", 0.5)]["pascanu_scale"] > 0 and rates[("lstm", 0.5)]["pascanu_scale"] is None
    header = paths["norms_csv"].read_text().splitlines()[0]
    assert "ln_block_c<-c" in header and "ln_direct_c" in header and "ln_pascanu_bound" in header
    assert not list(tmp_path.glob("decay/.*"))  # no temporary files left behind


def test_cli_decay(tmp_path, capsys):
    out = tmp_path / "rep"
    assert main(["decay", "--cells", "gru", "--scales", "1", "--H", "2", "--T", "30", "--seeds", "1",
                 "--grad-T", "5", "--workers", "1", "--no-progress", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "natural log per step" in text and str(out / "summary.md") in text
    assert (out / "rate_map.png").exists()
    assert main(["decay", "--scales", "1,-2", "--T", "5", "--no-progress", "--out", str(out)]) == 2
    assert "scale must be a finite number >= 0, got -2.0" in capsys.readouterr().err


def test_cli_decay_trained_weights(tmp_path, capsys):
    model = sr.Model("rnn-tanh", D=2, H=3, loss="upstream")
    params = make_params(model, "orthogonal", 0.9, seed=0)
    path = tmp_path / "w.npz"
    np.savez(path, **params)
    assert main(["decay", "--cells", "rnn-tanh", "--weights", str(path), "--layout", "symrnn", "--H", "3",
                 "--D", "2", "--T", "20", "--seeds", "1", "--workers", "1", "--no-progress",
                 "--out", str(tmp_path / "r")]) == 0
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert summary["rates"][0]["sigma_max"] == pytest.approx(0.9, rel=1e-12)


def test_a_gradient_that_becomes_exactly_zero_is_reported_as_minus_inf(tmp_path):
    """A relu cell whose units all die: every exponent is -inf, which the rates table must say
    (it said nan, 'regime -'), with no warnings on the way."""
    import warnings

    from symrnn.cli import main

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert main(["decay", "--cells", "rnn-relu", "--scales", "0.8", "--init", "orthogonal", "--scale-by",
                     "radius", "--H", "8", "--T", "3000", "--seeds", "2", "--workers", "1", "--out",
                     str(tmp_path / "d"), "--no-progress"]) == 0
    summary = (tmp_path / "d" / "summary.md").read_text()
    row = next(line for line in summary.splitlines() if line.startswith("| rnn-relu | 0.8 |"))
    assert "-inf" in row and "vanishing" in row and "nan" not in row, row


@pytest.mark.parametrize("where", ["file", "unmakeable"])
def test_decay_output_folder_that_cannot_be_written_fails_before_the_sweep(where, tmp_path, capsys):
    from symrnn.cli import main

    out = tmp_path / "afile" if where == "file" else Path("/proc/symrnn-decay")
    if where == "file":
        out.write_text("keep me")
    assert main(["decay", "--cells", "lstm", "--T", "50", "--out", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "output folder" in err and "Traceback" not in err
    if where == "file":
        assert out.read_text() == "keep me"


def test_weights_of_more_than_one_layer_are_refused():
    import torch

    from symrnn.decay.sweep import model_for
    from symrnn.decay.weights import load_params
    from symrnn.errors import ParameterError

    two = {k: v.numpy() for k, v in torch.nn.LSTM(5, 10, num_layers=2).state_dict().items()}
    with pytest.raises(ParameterError, match="more than one layer"):
        load_params(model_for("lstm", 5, 10), two, "pytorch")
    one = {k: v.numpy() for k, v in torch.nn.LSTM(5, 10).state_dict().items()}
    assert set(load_params(model_for("lstm", 5, 10), one, "pytorch")) == set(model_for("lstm", 5, 10).param_shapes)
