"""Derivation reports (symrnn.report): content, checks of the printed equations, LaTeX builds, errors.

* ``derivations/`` is regenerated and compared byte for byte (``make derivations`` updates it).
* Every report of ``derivations/`` (one per built-in cell, and rnn-tanh with every architecture) and a
  few variants compile with pdflatex without errors or overfull lines; ``pdftotext`` finds every section
  and every parameter's gradient.  These tests are marked ``latex``; without pdflatex they skip, unless
  the environment variable ``CI`` is set, where they fail.
* The printed equations are evaluated: the worked example's closed form against ``Model.loss_and_grads``
  and central differences, the derivative identities, the softmax cross-entropy rule and the step
  Jacobians against finite differences.
* ``tests/golden/`` pins the LaTeX of the worked examples (``SYMRNN_UPDATE_GOLDEN=1`` rewrites it).
"""
from __future__ import annotations

import doctest
import os
import re
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import sympy as sp

import symrnn as sr
import symrnn.report as report
from symrnn.models.architectures import ARCHITECTURES
from symrnn.engine.bptt import Diag
from symrnn.cli import load_cell, main
from symrnn.errors import SymRNNError, UnknownNameError
from symrnn.engine.functions import ACTIVATIONS, NUMPY_IMPLEMENTATIONS, sigmoid, step
from symrnn.report.compile import (LatexError, LatexNotFoundError, OutputPathError, compile_pdf, error_lines,
                                   write_atomic)
from symrnn.report.example import TOLERANCE, WorkedExample
from symrnn.report.latex import ReportLatexPrinter, break_lines, latex, tex_width
from symrnn.engine.symbols import MatTVec, MatVec, Outer, Param, tsym

# every test here shares the session's regenerated and compiled reports (minutes of work): under
# `make test` (pytest-xdist, --dist loadgroup) they run on one worker, so that work is done once
pytestmark = pytest.mark.xdist_group("reports")

ROOT = Path(__file__).resolve().parents[1]
DERIVATIONS = ROOT / "derivations"
GOLDEN = Path(__file__).resolve().parent / "golden"
SECTIONS = ("The model", "Notation", "Forward pass", "Loss", "The unrolled computation graph",
            "Local derivatives", "Adjoint recurrences", "Sensitivities (real-time recurrent learning)",
            "Gradients of the parameters", "Summary",
            "Jacobians and vanishing or exploding gradients", "A worked example by hand")
USER_CELL = """
# A user's cell file: any module with a function returning a symrnn.Cell.
from symrnn.engine.examples import minimal_gated_unit as mgu
"""


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def need(tool: str) -> None:
    """Skip without ``tool`` locally; fail in CI, where the job installs TeX."""
    if shutil.which(tool) is None:
        if in_ci():
            pytest.fail(f"{tool} is not installed but CI is set; the CI job must install TeX (see .ci/run).")
        pytest.skip(f"{tool} is not installed (with CI set this test fails instead of skipping)")


def model(cell="rnn-tanh", **kw):
    return sr.Model(cell, D=3, H=4, K=3 if kw.get("loss", "cross-entropy") != "upstream" else None, **kw)


def stems():
    return [report.report_stem(c, a) for c, a in report.report_models()]


def pdf_text(pdf: bytes, tmp_path: Path) -> str:
    need("pdftotext")
    path = tmp_path / "report.pdf"
    path.write_bytes(pdf)
    return subprocess.run(["pdftotext", str(path), "-"], capture_output=True, text=True, check=True).stdout


# -- fixtures: build every report once ----------------------------------------------------------
@pytest.fixture(scope="session")
def regenerated(tmp_path_factory):
    out = tmp_path_factory.mktemp("derivations")
    started = []
    written = report.write_all(out, progress=started.append)
    assert len(started) == len([p for p in written if p.suffix == ".tex"]) and started[0] in written[0].name
    assert sorted(p.name for p in written) == sorted(p.name for p in out.iterdir())
    return out


VARIANTS = {
    "lstm_many-to-one_mse_mean": dict(cell="lstm", architecture="many-to-one", loss="mse", reduction="mean"),
    "gru_one-to-many_upstream": dict(cell="gru", architecture="one-to-many", loss="upstream"),
    "lstm_many-to-many-delayed_cross-entropy": dict(cell="lstm", architecture="many-to-many-delayed"),
    "lstm_exercises": dict(cell="lstm", exercises=True),
    "rnn-tanh_many-to-one_exercises": dict(cell="rnn-tanh", architecture="many-to-one", exercises=True),
}


@pytest.fixture(scope="session")
def user_cell_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("user") / "mycells.py"
    path.write_text(USER_CELL)
    return path


@pytest.fixture(scope="session")
def compiled(regenerated, user_cell_file):
    """``{name: (CompileResult, model parameter names)}`` for every derivation and the variants."""
    need("pdflatex")
    jobs = {stem: ((regenerated / f"{stem}.tex").read_text(), None) for stem in stems()}
    for name, spec in VARIANTS.items():
        spec = dict(spec)
        exercises = spec.pop("exercises", False)
        m = model(spec.pop("cell"), **spec)
        jobs[name] = (report.latex_document(m, exercises=exercises), m)
    user = model(load_cell(f"{user_cell_file}:mgu"))
    jobs["user-mgu"] = (report.latex_document(user), user)
    with ThreadPoolExecutor(max_workers=2) as pool:
        results = dict(zip(jobs, pool.map(lambda tex: compile_pdf(tex), (t for t, _ in jobs.values()))))
    return {name: (results[name], jobs[name][1]) for name in jobs}


@pytest.fixture(scope="session")
def examples():
    return {}


def worked_example(examples, cell, **kw):
    key = (cell, tuple(sorted(kw.items())))
    if key not in examples:
        examples[key] = WorkedExample(model(cell, **kw))
    return examples[key]


# -- derivations/ ----------------------------------------------------------------------------------
def test_derivations_are_up_to_date(regenerated):
    committed = sorted(p.name for p in DERIVATIONS.iterdir() if not p.name.startswith("."))
    fresh = sorted(p.name for p in regenerated.iterdir())
    assert committed == fresh, (f"derivations/ has {sorted(set(committed) - set(fresh))} extra and lacks "
                                f"{sorted(set(fresh) - set(committed))}; run `make derivations`.")
    stale = [n for n in fresh if (DERIVATIONS / n).read_bytes() != (regenerated / n).read_bytes()]
    assert not stale, f"derivations/ differs from the generated reports in {stale}; run `make derivations`."


def test_the_derivations_cover_every_cell_and_architecture():
    pairs = report.report_models()
    assert {c for c, _ in pairs} == set(sr.BUILTIN_CELLS)
    assert {a for _, a in pairs} == set(ARCHITECTURES)


def test_reports_are_deterministic():
    m = model("rnn-tanh", architecture="many-to-one")
    assert report.latex_document(m) == report.latex_document(model("rnn-tanh", architecture="many-to-one"))


# -- compiled PDFs ---------------------------------------------------------------------------------
@pytest.mark.latex
@pytest.mark.parametrize("name", stems() + sorted(VARIANTS) + ["user-mgu"])
def test_report_compiles_without_overfull_lines(name, compiled, tmp_path):
    result, m = compiled[name]
    assert result.overfull_lines() == [], f"{name}: overfull lines in the PDF: {result.overfull_lines()}"
    text = pdf_text(result.pdf, tmp_path)
    for title in SECTIONS:  # matrix cells too: their sensitivity recurrence has no dotted spread or fold
        assert title in text, f"{name}: section {title!r} is missing from the PDF text"
    if m is None:
        cell, architecture = next((c, a) for c, a in report.report_models() if report.report_stem(c, a) == name)
        m = model(cell, architecture=architecture)
    for param in m.param_shapes:
        shown = {"∂" + param.replace("_", ""), "∂" + _greek(param)}  # LRU's nu, theta print as Greek letters
        assert any(s in text for s in shown), f"{name}: no gradient of {param} in the PDF text"


def _greek(param):
    """``nu`` -> ``ν``, ``theta`` -> ``θ``: how SymPy prints a parameter named after a Greek letter."""
    import unicodedata

    base, _, rest = param.partition("_")
    try:
        return unicodedata.lookup(f"GREEK SMALL LETTER {base.upper()}") + rest
    except KeyError:
        return param.replace("_", "")


@pytest.mark.latex
def test_derivation_latex_compiles_for_jupyter(tmp_path):
    need("pdflatex")
    block = report.derivation_latex(model("lstm").derive())
    assert block.startswith("$$\n\\begin{aligned}") and block.endswith("\\end{aligned}\n$$")
    tex = ("\\documentclass{article}\n\\usepackage{amsmath,amssymb}\n\\begin{document}\n"
           f"{block}\n\\end{{document}}\n")
    assert compile_pdf(tex).pdf.startswith(b"%PDF")


# -- golden text --------------------------------------------------------------------------------------
@pytest.mark.parametrize("cell", ["rnn-tanh", "lstm"])
def test_worked_example_latex_matches_golden(cell, regenerated):
    tex = (regenerated / f"{report.report_stem(cell, 'many-to-many')}.tex").read_text()
    section = tex[tex.index(r"\section{A worked example"):tex.index(r"\end{document}")]
    golden = GOLDEN / f"worked_example_{cell}.tex"
    if os.environ.get("SYMRNN_UPDATE_GOLDEN") == "1":
        golden.write_text(section)
    assert golden.exists(), f"{golden} is missing; run with SYMRNN_UPDATE_GOLDEN=1 to create it"
    assert section == golden.read_text(), (
        f"The worked example's LaTeX for {cell} changed. If the change is intended, review it and run "
        f"SYMRNN_UPDATE_GOLDEN=1 pytest tests/test_reports.py -k golden.")


# -- the worked example is checked in numbers ----------------------------------------------------------
# slstm-exp differs from slstm only in its forget gate, and an sLSTM's worked example takes a minute
@pytest.mark.parametrize("cell", [c for c in sr.BUILTIN_CELLS if c != "slstm-exp"])
def test_worked_example_closed_form_matches_generated_gradients(cell, examples):
    ex = worked_example(examples, cell)
    loss, grads = ex.model.loss_and_grads(ex.params, ex.inputs, ex.targets, h0=ex.h0)
    assert ex.evaluate(ex.closed_form) == pytest.approx(grads[ex.focus].ravel()[0], rel=1e-10, abs=1e-13)
    assert ex.evaluate(ex.loss_expr) == pytest.approx(loss, rel=1e-12)
    for e in ex.table():
        where = f"{cell}: d L / d {e.symbol}"
        assert abs(e.generated - e.closed) < TOLERANCE["closed"], where
        assert abs(e.generated - e.differences) < TOLERANCE["differences"], where


@pytest.mark.parametrize("kw", [dict(architecture="many-to-one"), dict(architecture="one-to-many"),
                                dict(architecture="one-to-one"), dict(architecture="many-to-many-delayed"),
                                dict(loss="mse", reduction="mean"), dict(loss="upstream"),
                                dict(reduction="mean")], ids=str)
def test_worked_example_follows_architecture_and_loss(kw, examples):
    ex = worked_example(examples, "rnn-tanh", **kw)
    loss, grads = ex.model.loss_and_grads(ex.params, ex.inputs, ex.targets, h0=ex.h0)
    assert ex.evaluate(ex.closed_form) == pytest.approx(grads["W"].ravel()[0], rel=1e-10, abs=1e-13)
    assert ex.evaluate(ex.loss_expr) == pytest.approx(loss, rel=1e-12)
    assert max(e.max_difference for e in ex.table()) < TOLERANCE["differences"]


def test_worked_example_abbreviations_expand_to_the_oracle_closed_form(examples):
    ex = worked_example(examples, "gru")
    expanded = ex.loss_expr
    for _ in range(len(ex.all_definitions) + 1):  # a definition may use the ones before it
        expanded = expanded.xreplace(dict(ex.all_definitions))
    oracle = ex.oracle.expanded_loss().xreplace({sp.Symbol("_scale"): ex.scale})
    values = {s: v for s, v in ex.leaves.items()}
    f = sp.lambdify(sorted(values, key=str), [expanded, oracle], modules=[NUMPY_IMPLEMENTATIONS, "numpy"])
    a, b = f(*[np.float64(values[s]) for s in sorted(values, key=str)])
    assert a == pytest.approx(b, rel=1e-13)


# -- the other printed equations are checked too -------------------------------------------------------
@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_printed_derivative_identities_hold(name):
    u = sp.Symbol("u")
    f = ACTIVATIONS[name]
    derivative = sp.diff(f(u), u)  # what the report prints in "Local derivatives"
    numeric = NUMPY_IMPLEMENTATIONS[name]
    g = sp.lambdify(u, derivative, modules=[NUMPY_IMPLEMENTATIONS, "numpy"])
    for a in (-1.3, -0.2, 0.4, 2.1):
        eps = 1e-6
        fd = (numeric(np.float64(a + eps)) - numeric(np.float64(a - eps))) / (2 * eps)
        assert g(np.float64(a)) == pytest.approx(fd, rel=1e-8, abs=1e-9), name
    assert latex(sp.diff(sigmoid(u), u), elementwise=False) == r"\left(1 - \sigma\left(u\right)\right) \sigma\left(u\right)"


def test_softmax_cross_entropy_rule_holds():
    m = model("rnn-tanh")
    rule = m.derive().loss["gradient"]  # printed as \bar{o}_t = \hat{y}_t - y_t
    o, y = sp.symbols("o1:4"), sp.symbols("y1:4")
    Z = sum(sp.exp(v) for v in o)
    loss = -sum(yk * sp.log(sp.exp(ok) / Z) for yk, ok in zip(y, o))
    values = {**dict(zip(o, (0.3, -1.2, 0.8))), **dict(zip(y, (0.2, 0.5, 0.3)))}  # targets summing to one
    for j in range(3):
        yhat_j = (sp.exp(o[j]) / Z).subs(values)
        printed = rule.rhs.subs({tsym("yhat"): yhat_j, tsym("y"): values[y[j]]})
        assert float(sp.diff(loss, o[j]).subs(values)) == pytest.approx(float(printed), rel=1e-12)


def _evaluate(expr, env):
    """A small NumPy evaluator of symrnn's vocabulary: vectors, MatVec, Diag and matrix products."""
    if expr in env:
        return env[expr]
    if expr.is_Number:
        return float(expr)
    if isinstance(expr, sp.Symbol) and not expr.is_commutative:
        return env[Param(expr.name)]
    if isinstance(expr, MatVec):
        return env[expr.args[0]] @ _evaluate(expr.args[1], env)
    if isinstance(expr, Diag):
        return np.diag(_evaluate(expr.args[0], env))
    if isinstance(expr, sp.Add):
        return sum(_evaluate(a, env) for a in expr.args)
    if isinstance(expr, sp.Mul) and not expr.is_commutative:  # numbers times a product of matrices
        c, nc = expr.args_cnc()
        out = _evaluate(nc[0], env)
        for factor in nc[1:]:
            out = out @ _evaluate(factor, env)
        return float(sp.Mul(*c)) * out
    if isinstance(expr, sp.Mul):  # elementwise
        out = 1.0
        for factor in expr.args:
            out = out * _evaluate(factor, env)
        return out
    if isinstance(expr, sp.Pow):
        return _evaluate(expr.base, env) ** float(expr.exp)
    return NUMPY_IMPLEMENTATIONS[type(expr).__name__](_evaluate(expr.args[0], env))


def _step(cell, env):
    env = dict(env)
    for eq in cell.equations:
        env[eq.target] = _evaluate(eq.rhs, env)
    return env


@pytest.mark.parametrize("cell", ["rnn-tanh", "lstm", "gru", "gru-reset-before-chung"])
def test_printed_step_jacobians_match_finite_differences(cell):
    c = sr.builtin_cell(cell)
    d = model(cell).derive()
    rng = np.random.default_rng(3)
    D, H = 2, 3
    env = {c.input_symbol: rng.normal(size=D)}
    for s in c.states:
        env[tsym(s, -1)] = rng.normal(size=H)
    for name, spec in c.params.items():
        env[spec.symbol] = rng.normal(size=tuple({"D": D, "H": H}[k] for k in spec.shape)) * 0.7
    after = _step(c, env)
    for (s, prev), jac in d.step_jacobians.items():
        printed = _evaluate(jac, after)
        fd = np.empty((H, H))
        for j in range(H):
            up, down = dict(env), dict(env)
            up[tsym(prev, -1)] = env[tsym(prev, -1)] + 1e-6 * np.eye(H)[j]
            down[tsym(prev, -1)] = env[tsym(prev, -1)] - 1e-6 * np.eye(H)[j]
            fd[:, j] = (_step(c, up)[tsym(s)] - _step(c, down)[tsym(s)]) / 2e-6
        np.testing.assert_allclose(np.broadcast_to(printed, (H, H)), fd, atol=1e-8,
                                   err_msg=f"{cell}: d{s}_t/d{prev}_(t-1)")


# -- the printer -------------------------------------------------------------------------------------
def test_printer_names_time_symbols_and_parameters():
    assert latex(tsym("h", -1)) == "h_{t-1}"
    assert latex(tsym("a", 1, bar=True)) == r"\bar{a}_{t+1}"
    assert latex(tsym("yhat")) == r"\hat{y}_{t}"
    assert latex(Param("U_i")) == "U_{i}"
    assert latex(Param("b_hn")) == "b_{hn}"
    assert latex(tsym("h", -1), time=1) == "h_{0}"
    assert latex(tsym("h", 1), time="k") == "h_{k+1}"


def test_printer_linear_maps_and_elementwise_products():
    W, V = Param("W"), Param("V")
    h, a_bar = tsym("h"), tsym("a", 1, bar=True)
    assert latex(MatVec(W, tsym("h", -1))) == "W h_{t-1}"
    assert latex(MatTVec(W, a_bar)) == r"W^{\top} \bar{a}_{t+1}"
    assert latex(MatTVec(W, a_bar * (1 - h ** 2))) == (
        r"W^{\top} \left(\bar{a}_{t+1} \odot \left(1 - h_{t}^{2}\right)\right)")
    assert latex(Outer(tsym("o", bar=True), h)) == r"\bar{o}_{t} h_{t}^{\top}"
    assert latex(Diag(1 - h ** 2) * sp.Symbol("W", commutative=False)) == (
        r"\operatorname{diag}\left(1 - h_{t}^{2}\right) W")
    assert latex(sigmoid(tsym("a"))) == r"\sigma\left(a_{t}\right)"
    assert latex(step(tsym("a"))) == r"\mathbf{1}\left[a_{t} > 0\right]"
    assert latex(sp.Symbol("x") * sp.Symbol("y"), elementwise=False) == "x y"
    assert r"\odot" not in latex(tsym("a") * tsym("b"), elementwise=False)


def test_long_equations_are_broken_within_the_width():
    d = model("lstm").derive()
    printer = ReportLatexPrinter()
    rhs = next(a.rhs for a in d.adjoints if a.lhs == tsym("h", bar=True))
    lines = break_lines(rhs, printer, 50.0, 46.0)
    assert len(lines) > 1
    assert tex_width(lines[0]) <= 50.0 and all(tex_width(line) <= 46.0 for line in lines[1:])
    flat = re.sub(r"\s+", "", " ".join(lines))
    assert flat.count(r"W_{") == 4 and flat.count(r"V^{\top}") == 1


# -- Markdown and Jupyter ----------------------------------------------------------------------------
def test_markdown_report_renders_on_github(regenerated):
    md = (regenerated / "lstm_many-to-many.md").read_text()
    for k, title in enumerate(SECTIONS, 1):
        assert f"## {k}. {title}" in md
    assert md.count("$$") % 2 == 0 and "```mermaid" in md
    tags = [int(n) for n in re.findall(r"\\tag\{(\d+)\}", md)]
    assert tags == list(range(1, len(tags) + 1))
    assert "\\label" not in md and "\\begin{split}" not in md and "\\eqref" not in md
    for row in (line for line in md.splitlines() if line.startswith("| ")):
        cells = row.strip("|").split("|")
        assert all(cell.count("$") % 2 == 0 for cell in cells), row


def test_derivation_latex_for_jupyter():
    block = report.derivation_latex(model("gru").derive())
    assert r"\bar{h}_{t} &= " in block and r"\frac{\partial L}{\partial W_{n}}" in block
    assert r"n_{t} &= \tanh" in block


# -- files, errors and the command line -------------------------------------------------------------------
def test_write_report_markdown_and_tex(tmp_path):
    m = model("rnn-relu", architecture="many-to-one")
    md = report.write_report(m, "md", tmp_path / "r.md")
    tex = report.write_report(m, "tex", str(tmp_path / "r.tex"))
    assert md == tmp_path / "r.md" and md.read_text().startswith("# Backpropagation through time")
    assert tex.read_text().startswith("\\documentclass")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.md", "r.tex"]  # no temporary files left


def test_unknown_format_lists_the_formats(tmp_path):
    with pytest.raises(UnknownNameError, match=r"'docx'.*\['tex', 'pdf', 'md'\]"):
        report.write_report(model(), "docx", tmp_path / "r.docx")


@pytest.mark.parametrize("where", ["missing-dir", "directory"])
def test_unwritable_output_fails_before_any_work(where, tmp_path, monkeypatch):
    def no_work(m):
        raise AssertionError("the report was built before the output path was checked")

    monkeypatch.setattr(report, "build_document", no_work)
    monkeypatch.setattr(report, "latex_document", no_work)
    monkeypatch.setattr(report, "markdown_document", no_work)
    path = tmp_path / "no" / "such" / "r.tex" if where == "missing-dir" else tmp_path
    with pytest.raises(OutputPathError, match="does not exist|is a directory") as info:
        report.write_report(model(), "tex", path)
    assert isinstance(info.value, SymRNNError) and isinstance(info.value, ValueError)


def test_read_only_directory_is_refused(tmp_path, monkeypatch):
    """A directory where no file can be created (simulated: CI runs as root, who may write anywhere)."""
    import symrnn.fileio

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(symrnn.fileio.tempfile, "mkstemp", refuse)
    with pytest.raises(OutputPathError, match="Cannot write .*Permission denied"):
        report.write_report(model(), "md", tmp_path / "r.md")
    assert not (tmp_path / "r.md").exists()


def test_pdf_without_pdflatex_writes_the_tex_and_says_how_to_install(tmp_path, monkeypatch):
    monkeypatch.setattr(report, "latex_available", lambda: False)
    with pytest.raises(LatexNotFoundError, match="apt-get install texlive-latex-base") as info:
        report.write_report(model(), "pdf", tmp_path / "r.pdf")
    assert info.value.tex_path == tmp_path / "r.tex" and (tmp_path / "r.tex").read_text().startswith("\\document")
    assert not (tmp_path / "r.pdf").exists()


@pytest.mark.latex
def test_failed_latex_run_shows_the_log_and_keeps_the_tex(tmp_path, monkeypatch):
    need("pdflatex")
    broken = "\\documentclass{article}\n\\begin{document}\n\\undefinedmacro\n\\end{document}\n"
    monkeypatch.setattr(report, "latex_document", lambda m, exercises=False: broken)
    with pytest.raises(LatexError) as info:
        report.write_report(model(), "pdf", tmp_path / "r.pdf")
    message = str(info.value)
    assert "! Undefined control sequence." in message and "\\undefinedmacro" in message
    assert (tmp_path / "r.tex").read_text() == broken and not (tmp_path / "r.pdf").exists()
    assert str(tmp_path / "r.tex") in message


def test_error_lines_pick_the_bang_lines():
    log = "a\nb\n! Missing $ inserted.\n<inserted text>\nl.12 x_1\n\nmore\nc\n"
    assert error_lines(log, after=2) == "! Missing $ inserted.\n<inserted text>\nl.12 x_1\n..."


def test_write_atomic_keeps_the_old_file_when_the_write_fails(tmp_path, monkeypatch):
    path = write_atomic(tmp_path / "r.md", "old")
    write_atomic(path, "new")
    assert path.read_text() == "new"

    def fail(*args):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(OSError, match="disk full"):
        write_atomic(path, "newer")
    assert path.read_text() == "new" and [p.name for p in tmp_path.iterdir()] == ["r.md"]


def test_cli_derive_writes_markdown(tmp_path, capsys):
    out = tmp_path / "lstm.md"
    assert main(["derive", "lstm", "--architecture", "many-to-one", "--format", "md", "-o", str(out)]) == 0
    said = capsys.readouterr()
    assert f"wrote {out}" in said.out
    assert said.err.startswith("deriving the report of Model('lstm'")  # not silent while it works
    assert "## 7. Adjoint recurrences" in out.read_text()


def test_cli_unknown_model_lists_the_cells(tmp_path, capsys):
    assert main(["derive", "lstn", "-o", str(tmp_path / "x.tex")]) == 2
    err = capsys.readouterr().err
    assert "lstn" in err and "rnn-tanh" in err and "gru-reset-before" in err


def test_cli_unknown_option_lists_the_choices(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["derive", "lstm", "--architecture", "many", "-o", str(tmp_path / "x.tex")])
    err = capsys.readouterr().err
    assert "many-to-one" in err and "many-to-many-delayed" in err


def test_cli_unwritable_output_is_an_error(tmp_path, capsys):
    assert main(["derive", "gru", "-o", str(tmp_path / "missing" / "x.tex")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_user_cell_reports_from_cli_and_api(tmp_path, user_cell_file):
    out = tmp_path / "mgu.tex"
    assert main(["derive", f"{user_cell_file}:mgu", "--format", "tex", "-o", str(out)]) == 0
    tex = out.read_text()
    assert "minimal gated unit" in tex and r"\frac{\partial L}{\partial W_{n}}" in tex
    cell = load_cell(f"{user_cell_file}:mgu")
    md = report.write_report(model(cell, loss="upstream"), "md", tmp_path / "mgu.md").read_text()
    assert "There is no readout" in md and r"\bar{h}_{t}" in md


def test_cell_roles_and_shapes_appear_in_the_notation_table():
    tex = report.latex_document(model("gru"))
    table = tex[tex.index(r"\label{tab:notation}"):tex.index(r"\end{longtable}")]
    assert r"$b_{hn}$ & $H$ & recurrent bias of the candidate, inside the reset" in table
    assert r"$U_{r}$ & $H \times D$ & input-to-hidden weights of the reset gate" in table


def test_user_text_is_escaped():
    cell = sr.rnn("tanh")
    cell.description = "50% of a_b & #1 {x}"
    tex = report.latex_document(model(cell))
    assert r"50\% of a\_b \& \#1 \{x\}" in tex
    md = report.markdown_document(model(cell))
    assert r"50% of a\_b & #1 {x}" in md


def test_readme_of_the_derivations_lists_every_report(regenerated):
    readme = (regenerated / "README.md").read_text()
    for stem in stems():
        assert f"[{stem}.md]({stem}.md)" in readme


def test_package_docstring_example_runs():
    failures, tried = doctest.testmod(report, verbose=False)
    assert tried > 0 and failures == 0


def _leaky_cell(name, bias, recurrent, let):
    c = sr.Cell(name)
    x, h = c.input(), c.state("h")
    U, W, b = c.param("U", "H", "D"), c.param(recurrent, "H", "H"), c.param(bias, "H")
    a = c.let(let, U @ x + W @ h + b)
    c.update(h, h / 2 + sr.tanh(a) / 2)
    return c


def test_printer_names_greek_letters_and_superscripted_names():
    """Names the README allows: a Greek letter as its command, another character outside ASCII by its code
    point, a superscript (``W__x``) as one group that a transpose may follow."""
    assert latex(Param("λ")) == r"\lambda" and latex(tsym("β_1")) == r"\beta_{1,t}"
    assert latex(Param("é")) == r"\mathrm{U+00E9}"
    assert latex(MatTVec(Param("W__x"), tsym("a", 1, bar=True))) == r"{W^{x}}^{\top} \bar{a}_{t+1}"
    assert latex(Param("W")) == "W" and latex(Param("alpha")) == r"\alpha"  # as SymPy prints them


@pytest.mark.latex
@pytest.mark.parametrize("names", [("λ", "W", "ψ"), ("b", "W__x", "a"), ("b", "W", "a_t_prev")],
                         ids=["greek", "superscript", "underscores"])
def test_reports_of_cells_with_unusual_names_compile(names, tmp_path):
    """The PDF of a cell whose names are Greek letters or carry a superscript compiles (pdflatex refused
    ``λ`` and ``W^{x}^{\\top}``: tryout8), and its text names the parameters."""
    need("pdflatex")
    m = sr.Model(_leaky_cell("odd", *names), D=2, H=3, K=2)
    result = compile_pdf(report.latex_document(m))
    assert result.pdf.startswith(b"%PDF")
    assert "U+" not in pdf_text(result.pdf, tmp_path)
