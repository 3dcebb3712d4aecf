"""The symrnn command."""
import subprocess
import sys

import pytest

from symrnn.cli import load_cell, main
from symrnn.errors import UnknownNameError


def run(*args):
    return subprocess.run([sys.executable, "-m", "symrnn.cli", *args], capture_output=True, text=True)


def test_help_lists_the_commands():
    out = run("--help")
    assert out.returncode == 0
    for command in ("derive", "derive-all", "check", "cells", "demo"):
        assert command in out.stdout


def test_python_dash_m_symrnn_is_the_command():
    out = subprocess.run([sys.executable, "-m", "symrnn", "cells"], capture_output=True, text=True)
    assert out.returncode == 0 and "min-gru" in out.stdout
    assert subprocess.run([sys.executable, "-m", "symrnn", "derive", "no-such-cell"], capture_output=True,
                          text=True).returncode == 2


def test_cells_lists_what_exists(capsys):
    assert main(["cells"]) == 0
    out = capsys.readouterr().out
    assert "lstm" in out and "many-to-one" in out and "cross-entropy" in out


def test_check_prints_the_agreement_table(capsys):
    assert main(["check", "rnn-tanh"]) == 0
    out = capsys.readouterr().out
    assert "unrolled scalar oracle" in out and "| NO |" not in out


@pytest.mark.parametrize("options", [["--decoder", "gru"], ["--attention", "dot"], ["--bridge", "tanh"], ["--context"]])
def test_check_of_an_encoder_decoder_prints_its_agreement_table(capsys, options):
    """The options that make a symrnn.Seq2Seq give its own table (they ended in an internal error, exit 5)."""
    assert main(["check", "gru", *options]) == 0
    out = capsys.readouterr().out
    assert "unrolled scalar program (SymPy, float64)" in out and "central differences" in out and "| NO |" not in out


def test_unknown_cell_lists_the_builtins(capsys):
    assert main(["check", "bogus"]) == 2
    err = capsys.readouterr().err
    assert "Unknown cell 'bogus'" in err and "lstm" in err


def test_user_cell_from_module_and_file(tmp_path):
    assert load_cell("symrnn.engine.examples:peephole_lstm").name == "peephole-lstm"
    f = tmp_path / "mycell.py"
    f.write_text("import symrnn as sr\n\ndef cell():\n    return sr.rnn('relu')\n")
    assert load_cell(f"{f}:cell").name == "rnn-relu"
    with pytest.raises(UnknownNameError, match="has no function"):
        load_cell(f"{f}:nothing")


def test_derive_takes_the_format_from_the_extension(tmp_path, capsys):
    from symrnn.cli import main

    from test_reports import need

    assert main(["derive", "rnn-tanh", "-o", str(tmp_path / "r.md")]) == 0
    assert (tmp_path / "r.md").read_text().startswith("# Backpropagation")
    assert main(["derive", "rnn-tanh", "--format", "md", "-o", str(tmp_path / "r.tex")]) == 2
    assert "ends in .tex" in capsys.readouterr().err
    need("pdflatex")  # skips locally without TeX, fails in CI
    assert main(["derive", "rnn-tanh", "-o", str(tmp_path / "r.pdf")]) == 0
    assert (tmp_path / "r.pdf").read_bytes().startswith(b"%PDF")


def test_merge_without_bidirectional_is_refused(capsys):
    from symrnn.cli import main

    assert main(["derive", "rnn-tanh", "--merge", "max"]) == 2
    assert "add --bidirectional" in capsys.readouterr().err


def test_write_report_takes_a_seq2seq_model(tmp_path):
    import symrnn as sr
    from symrnn.report import write_report

    path = write_report(sr.Seq2Seq("gru", "lstm", src_vocab=6, tgt_vocab=5, E=3, H=4), "md", tmp_path / "s.md")
    assert "Decoder" in path.read_text()


def test_demo_says_why_it_writes_tex_instead_of_pdf(monkeypatch):
    import shutil

    from symrnn import demo

    monkeypatch.setattr(shutil, "which", lambda name: None)
    fmt, why = demo.report_format()
    assert fmt == "tex" and "pdflatex is not on the PATH" in why and "texlive" in why
    monkeypatch.setattr(shutil, "which", lambda name: "/usr/bin/" + name)
    assert demo.report_format() == ("pdf", "")


def test_an_unknown_option_is_reported_with_the_commands_own_usage():
    out = run("verify", "x.py:f", "--frobnicate")
    assert out.returncode == 2 and "usage: symrnn verify" in out.stderr
    assert "symrnn verify: error: unrecognized arguments: --frobnicate" in out.stderr
