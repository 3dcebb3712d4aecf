"""The main job of ``make demo``: derive the built-in cells, check them, write reports.

For each built-in cell it prints the forward and adjoint equations, evaluates
the generated gradients on random data, prints their agreement with every
oracle (unrolled scalar SymPy program, PyTorch autograd, central
differences, high-precision Richardson differences) and writes the derivation
reports; then the same for a 2-layer bidirectional LSTM (symrnn.StackedModel); at the end it says
where everything went.
"""
from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

from .cells import BUILTIN_CELLS
from .checks import agreement_table
from .fileio import write_text_atomic
from .model import Model
from .oracles.stacked import stack_agreement_table
from .wiring import StackedModel

DEMO_CELLS = tuple(BUILTIN_CELLS)


def run(out="reports") -> int:
    out = Path(out) / "demo"
    out.mkdir(parents=True, exist_ok=True)  # check_writable wants the folder to exist
    summary = ["# symrnn demo", ""]
    written = []
    for name in DEMO_CELLS:
        model = Model(name, D=3, H=4, K=3)
        derivation = model.derive()
        print(f"\n=== {name}: {model.cell.description} ===")
        print(derivation)
        table = agreement_table(model)
        print()
        print(table)
        summary += [f"## {name}", "", "```", repr(derivation), "```", "", table, ""]
        written += _reports(model, out)
    stack = StackedModel("lstm", D=3, H=4, K=3, num_layers=2, bidirectional=True)
    print(f"\n=== {stack!r} ===")
    print("Two layers of bidirectional LSTMs: each direction runs the lstm cell's generated code (the backward "
          "direction on the reversed sequence); the concat merge and the layer link have their own rules.")
    table = stack_agreement_table(stack)
    print()
    print(table)
    summary += ["## 2-layer bidirectional lstm", "", table, ""]
    written += _reports(stack, out, "lstm_2-layer-bidirectional")
    summary_path = write_text_atomic(out / "agreement.md", "\n".join(summary) + "\n")
    decay_path = decay_report(out.parent / "decay")
    print("\nOutput:")
    print(f"  agreement tables and equations: {summary_path}")
    for path in written:
        print(f"  derivation report: {path}")
    print(f"  gradient decay report (rnn-tanh vs lstm vs gru across scales): {decay_path}")
    return 0


def decay_report(out):
    """The decay report of the demo: rnn-tanh, LSTM and GRU, orthogonal weights at four scales,
    two seeds, H = 8, T = 300 (a few seconds)."""
    from .decay.report import rates_table, write_report
    from .decay.sweep import sweep

    print("\n=== gradient decay: rnn-tanh vs lstm vs gru across scales ===")
    result = sweep(["rnn-tanh", "lstm", "gru"], [0.5, 1.0, 2.0, 4.0], seeds=[0, 1], H=8, D=2, T=300,
                   init="orthogonal", grad_T=30, progress=False)
    for r in rates_table(result):
        print(f"  {r['cell']:>8s}  scale {r['scale']:<4g} top Lyapunov exponent {r['top_exponent_mean']:+.3f} "
              f"(natural log per step, {r['regime']})")
    return write_report(result, out, title="Gradient decay: rnn-tanh vs LSTM vs GRU")["markdown"]


def _reports(model, out, stem=None):
    try:
        from .report import write_report
    except ImportError:
        return []
    stem = stem or model.cell.name
    paths = [write_report(model, "md", out / f"{stem}.md")]
    fmt = "pdf" if shutil.which("pdflatex") else "tex"
    paths.append(write_report(model, fmt, out / f"{stem}.{fmt}"))
    return paths


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m symrnn.demo")
    parser.add_argument("--out", default="reports")
    return run(parser.parse_args(argv).out)


if __name__ == "__main__":
    sys.exit(main())
