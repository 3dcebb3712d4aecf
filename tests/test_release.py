"""What a release needs from the package itself: one version source, `symrnn --version`,
`symrnn derive` to standard output, and the shipped example that `symrnn verify` judges.
(`make wheel-smoke`, run by .ci/run, installs the built wheel and sdist into fresh
environments and runs the same commands there.)"""
import subprocess
import sys
import tomllib
from pathlib import Path

import symrnn
import symrnn.example_backprop as example
import symrnn.verify as V

ROOT = Path(__file__).resolve().parents[1]


def cli(*args):
    return subprocess.run([sys.executable, "-m", "symrnn.cli", *args], capture_output=True, text=True)


def test_one_version_source():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert "version" not in project and "version" in project["dynamic"]
    assert cli("--version").stdout.strip() == f"symrnn {symrnn.__version__}"
    assert (ROOT / "LICENSE").read_text().startswith("BSD 3-Clause License")
    assert f"## {symrnn.__version__}" in (ROOT / "CHANGELOG.md").read_text()


def test_derive_writes_to_standard_output():
    out = cli("derive", "lstm")
    assert out.returncode == 0 and out.stdout.startswith(r"\documentclass")
    md = cli("derive", "rnn-tanh", "--format", "md")
    assert md.stdout.startswith("# Backpropagation through time")
    pdf = cli("derive", "lstm", "--format", "pdf")
    assert pdf.returncode == 2 and "give -o FILE.pdf" in pdf.stderr


def test_the_shipped_example_is_right_and_its_buggy_twin_is_named():
    assert V.verify_layer(example.rnn_forward, example.rnn_backward).ok
    wrong = V.verify_layer(example.buggy_rnn_forward, example.buggy_rnn_backward)
    assert wrong.fingerprint.name == "recurrent-term-dropped"
    assert cli("verify", "symrnn.example_backprop:buggy_rnn_backward").returncode == 1
