"""The main job of ``make demo``: derive the built-in cells, check them, write reports.

For each built-in cell it prints the forward and adjoint equations, evaluates
the generated gradients on random data, prints their agreement with every
oracle (unrolled scalar SymPy program, PyTorch autograd, central
differences, high-precision Richardson differences) and writes the derivation
reports; then the same for a 2-layer bidirectional LSTM (symrnn.StackedModel); then a sequence-to-sequence
model with attention (symrnn.Seq2Seq): its derivation, its agreement table, a short training on a
reversal task with its exact gradients, its report with the measured gradient paths to the encoder and a
picture of its attention weights; at the end it says where everything went.
"""
from __future__ import annotations

import argparse

import numpy as np
import shutil
import sys
from pathlib import Path

from .engine.cells import BUILTIN_CELLS
from .checks import agreement_table
from .fileio import check_output_dir, write_text_atomic
from .models.model import Model
from .models.seq2seq import Seq2Seq
from .models.seq2seq_blocks import reversal
from .models.wiring import StackedModel

DEMO_CELLS = tuple(BUILTIN_CELLS)


def report_format():
    """``(format, why)`` of the demo's derivation reports: ``("pdf", "")`` when pdflatex is on the PATH, else
    ``("tex", the reason and what to do)``: the LaTeX source is written instead of the PDF."""
    if shutil.which("pdflatex"):
        return "pdf", ""
    from .report.compile import INSTALL_HINT

    return "tex", (f"pdflatex is not on the PATH, so the derivation reports are LaTeX sources (.tex), not PDFs. "
                   f"To get PDFs, {INSTALL_HINT}, then run `make demo` again (or `latexmk -pdf FILE.tex` in "
                   f"reports/demo).")


def run(out="reports") -> int:
    out = check_output_dir(Path(out) / "demo", probe="agreement.md")  # a folder that cannot be written fails now
    check_output_dir(out.parent / "decay")
    fmt, why = report_format()
    if why:
        print(f"Note: {why}")
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
    table = agreement_table(stack)
    print()
    print(table)
    summary += ["## 2-layer bidirectional lstm", "", table, ""]
    written += _reports(stack, out, "lstm_2-layer-bidirectional")
    seq_lines, seq_written = _seq2seq(out)
    summary += seq_lines
    written += seq_written
    summary_path = write_text_atomic(out / "agreement.md", "\n".join(summary) + "\n")
    decay_path = decay_report(out.parent / "decay")
    print("\nOutput:")
    print(f"  agreement tables and equations: {summary_path}")
    for path in written:
        print(f"  {'attention picture' if str(path).endswith('.png') else 'derivation report'}: {path}")
    print(f"  gradient decay report (rnn-tanh vs lstm vs gru across scales): {decay_path}")
    if why:
        print(f"\nNote: {why}")
    return 0


def decay_report(out):
    """The decay report of the demo: rnn-tanh, LSTM and GRU, orthogonal weights at four scales,
    two seeds, H = 8, T = 300 (a few seconds)."""
    from .decay.report import rates_table, write_report
    from .decay.sweep import sweep

    print("\n=== gradient decay: rnn-tanh vs lstm vs gru across scales ===")
    result = sweep(["rnn-tanh", "lstm", "gru"], [0.5, 1.0, 2.0, 4.0], seeds=[0, 1], H=8, D=2, T=300,
                   init="orthogonal", grad_T=30, progress=False)
    rates = rates_table(result)
    for r in rates:
        print(f"  {r['cell']:>8s}  scale {r['scale']:<4g} top Lyapunov exponent {r['top_exponent_mean']:+.3f} "
              f"(natural log per step, {r['regime']})")
    why = forget_gate_line(rates)
    if why:
        print("  " + why)
    return write_report(result, out, title="Gradient decay: rnn-tanh vs LSTM vs GRU")["markdown"]


def forget_gate_line(rates, scale=1.0):
    """One line saying why the untrained LSTM decays faster than the tanh RNN at ``scale`` (when it does),
    with the option to try and what it gives (measured here)."""
    from .decay import decay_profile, make_params

    top = {r["cell"]: r["top_exponent_mean"] for r in rates if r["scale"] == scale}
    if not ("lstm" in top and "rnn-tanh" in top and top["lstm"] < top["rnn-tanh"]):
        return None
    lstm = Model("lstm", D=2, H=8, loss="upstream")
    tried = np.mean([decay_profile(lstm, make_params(lstm, "orthogonal", scale, seed=s, forget_bias=1.0), 300,
                                   k=1, curve=False).top_exponent for s in (0, 1)])
    return (f"Why the LSTM decays faster than rnn-tanh at scale {scale:g} ({top['lstm']:+.3f} vs "
            f"{top['rnn-tanh']:+.3f}): its forget-gate bias is 0, so f = sigmoid(...) is about 1/2 and the cell path "
            f"keeps about ln(1/2) = -0.69 per step; with forget_bias=1 (symrnn decay --forget-bias 1) lambda_1 is "
            f"{tried:+.3f}.")


def _reversal_batch(rng, V, S, N):
    """Source ids 2..V-1 padded with 0; the target is the source reversed (BOS = 1 starts tgt_in)."""
    L = rng.integers(S // 2, S + 1, N)
    mask = np.arange(S)[:, None] < L
    src = np.where(mask, rng.integers(2, V, (S, N)), 0)
    rev = np.where(mask, np.take_along_axis(src, reversal(L, S), axis=0), 0)
    return src, mask, np.vstack([np.ones((1, N), dtype=rev.dtype), rev[:-1]]), rev


def _seq2seq(out, steps=300):
    """A bidirectional GRU encoder, a GRU decoder with Luong's general attention: checked, trained with Adam
    on reversing sequences, reported (derivation, gradient paths) and its attention drawn."""
    from .oracles.seq2seq import seq2seq_agreement_table
    from .report.seq2seq import plot_attention, write_seq2seq_report

    tiny = Seq2Seq("gru", src_vocab=4, tgt_vocab=3, E=2, H=2, bidirectional=True, bridge="tanh",
                   attention="general")
    print(f"\n=== {tiny!r} ===")
    print(tiny.derive())
    table = seq2seq_agreement_table(tiny)
    print()
    print(table)
    V, S, N = 10, 8, 32
    model = Seq2Seq("gru", src_vocab=V, tgt_vocab=V, E=16, H=32, bidirectional=True, bridge="tanh",
                    attention="general")
    params = model.init_params(seed=0)
    rng = np.random.default_rng(0)
    first = {k: np.zeros_like(v) for k, v in params.items()}
    second = {k: np.zeros_like(v) for k, v in params.items()}
    print(f"\n=== training {model!r} to reverse sequences of 4-8 tokens (Adam, {steps} steps) ===")
    for step in range(1, steps + 1):
        src, mask, tin, tout = _reversal_batch(rng, V, S, N)
        loss, grads = model.loss_and_grads(params, src, tin, tout, src_mask=mask, tgt_mask=mask)
        for k, g in grads.items():
            first[k] = 0.9 * first[k] + 0.1 * g
            second[k] = 0.999 * second[k] + 0.001 * g * g
            params[k] -= 0.01 * (first[k] / (1 - 0.9 ** step)) / (np.sqrt(second[k] / (1 - 0.999 ** step)) + 1e-8)
        if step % 100 == 0:
            print(f"  step {step}: loss {loss:.4f}")
    src, mask, tin, tout = _reversal_batch(rng, V, S, N)
    result = model.forward(params, src, tin, src_mask=mask)
    accuracy = float(((result["logits"].argmax(-1) == tout) & mask).sum() / mask.sum())
    print(f"  token accuracy on a new batch: {accuracy:.3f}")
    n, length = 0, int(mask[:, 0].sum())
    picture = plot_attention(result["attention"][:length, n, :length], out / "seq2seq_attention.png",
                             [str(v) for v in src[:length, n]], [str(v) for v in tout[:length, n]],
                             f"attention weights a[t, s] after {steps} Adam steps\n"
                             f"(reversal: target step t reads source position S+1-t)")
    numbers = (params, src, tin, tout, dict(src_mask=mask, tgt_mask=mask))
    stem = "seq2seq_bigru_general-attention"
    reports = [write_seq2seq_report(model, "md", out / f"{stem}.md", numbers)]
    fmt = report_format()[0]
    reports.append(write_seq2seq_report(model, fmt, out / f"{stem}.{fmt}", numbers))
    lines = ["## seq2seq with attention", "", "```", repr(tiny.derive()), "```", "", table, "",
             f"Trained {steps} Adam steps on reversal: token accuracy {accuracy:.3f} on a new batch.", ""]
    return lines, reports + [picture]


def _reports(model, out, stem=None):
    try:
        from .report import write_report
    except ImportError:
        return []
    stem = stem or model.cell.name
    paths = [write_report(model, "md", out / f"{stem}.md")]
    fmt = report_format()[0]
    paths.append(write_report(model, fmt, out / f"{stem}.{fmt}"))
    return paths


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m symrnn.demo")
    parser.add_argument("--out", default="reports")
    return run(parser.parse_args(argv).out)


if __name__ == "__main__":
    sys.exit(main())
