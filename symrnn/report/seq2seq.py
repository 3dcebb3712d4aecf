"""The derivation report of a sequence-to-sequence model (:class:`symrnn.models.seq2seq.Seq2Seq`).

Built from :class:`symrnn.models.seq2seq.Seq2SeqDerivation` (every equation printed from the SymPy objects
the computation uses: the cells' derivations, the stateless blocks', the attention program's rules)
into the format-independent :class:`~symrnn.report.blocks.Document`, rendered as Markdown or LaTeX.
With numbers (``params`` and a batch) it adds the measured decomposition of ``dL/dh_enc_s`` by path.
"""
from __future__ import annotations

import io

import re

import numpy as np
import sympy as sp

from .blocks import Code, Display, Document, Math, Paragraph, Row, Section, Table
from .latex import ReportLatexPrinter, break_lines, tex_width

LINE_WIDTH = 60.0  # what fits on one line (units of latex.tex_width), as in the cell reports

_INDEXED = re.compile(r"^(bar )?([A-Za-z_]\w*)\[(.+)\]$")
_NAMES = {"hbar": r"\bar{h}", "htilde": r"\tilde{h}", "ctx": "c", "emb_tgt": r"\mathrm{emb}"}


class Seq2SeqPrinter(ReportLatexPrinter):
    """Prints ``e[t,s]`` as ``e_{t,s}``, ``hbar[s]`` as ``\\bar{h}_{s}`` and adjoints ``bar u`` as ``\\overline{u}``."""

    def _print_Symbol(self, expr, style="plain"):
        if expr.name.startswith("bar "):
            return r"\overline{%s}" % self._print(sp.Symbol(expr.name[4:]))
        match = _INDEXED.match(expr.name)
        if match and (match.group(2) in _NAMES or not re.fullmatch(r"t([+-]\d+)?", match.group(3))):
            _, base, index = match.groups()
            time = re.fullmatch(r"t([+-]\d+)?", index)
            return "%s_{%s}" % (_NAMES.get(base, self.name_tex(base)), index.replace(",", ", ") if not time else index)
        return super()._print_Symbol(expr, style)


def _rows(pairs, printer, width=LINE_WIDTH):
    """Rows of ``lhs = rhs``, long right sides broken into lines that fit the page."""
    rows = []
    for lhs, rhs in pairs:
        left = printer.doprint(lhs)
        first = width - tex_width(left) - 3.0
        lines = break_lines(rhs, printer, first, first - 2.5) if isinstance(rhs, sp.Basic) else [printer.doprint(rhs)]
        rows.append(Row(left, lines))
    return Display(rows)


def build_seq2seq_document(model, numbers=None) -> Document:
    """The report's :class:`Document`; ``numbers`` is ``(params, src, tgt_in, tgt_out, kwargs)`` or None."""
    d = model.derive()
    p = Seq2SeqPrinter()
    sections = []
    shapes = Table(["l", "l", "l"], [["parameter"], ["shape"], ["role"]],
                   [[[Code(k)], [str(v)], [_role(k)]] for k, v in model.param_shapes.items()],
                   ["Parameters and their gradients (same keys)."], "tab:params")
    sections.append(Section("The model", "sec:model", [Paragraph([repr(model)]), shapes]))
    enc = d.encoder
    sections.append(Section(f"Encoder: {model.encoder.cell.name}", "sec:encoder", [
        Paragraph([f"Each direction of each of the {model.encoder.num_layers} layer(s) runs these equations (the "
                   f"backward direction over each sequence reversed within its length); ",
                   Math(p.doprint(next(iter(enc.external.values())))), " is the gradient "
                   "that reaches its output state from above (the layer above, the attention, the bridge and "
                   "the context)."]),
        _rows([(e.lhs, e.rhs) for e in enc.forward], p),
        _rows([(a.lhs, a.rhs) for a in enc.adjoints], p)]))
    blocks = [Paragraph([d.z_note + "."])]
    if d.bridge is not None:
        blocks += [_rows([(e.lhs, e.rhs) for e in d.bridge.forward], p),
                   _rows([(sp.Symbol("bar z"), d.bridge.input_gradient)], p)]
    else:
        blocks.append(Paragraph([f"bridge = {model.bridge_mode}"]))
    sections.append(Section("Bridge", "sec:bridge", blocks))
    dec = d.decoder
    sections.append(Section(f"Decoder: {model.decoder.cell.name}", "sec:decoder", [
        Paragraph([f"Teacher forcing; the input at step t is [{'; '.join(d.decoder_input)}]; ",
                   Math(p.doprint(next(iter(dec.external.values())))), " is the gradient that reaches the "
                   "decoder's state from above (the readout and, with attention, the attention)."]),
        _rows([(e.lhs, e.rhs) for e in dec.forward], p),
        _rows([(a.lhs, a.rhs) for a in dec.adjoints], p)]))
    if d.attention is not None:
        equations, adjoints = d.attention
        blocks = [Paragraph([f"The {model.attention.score} score, {model.style} style. Each line is one operation "
                             f"over source positions; its adjoint comes from the operation's rule in "
                             f"symrnn.engine.functions.SEQUENCE_RULES (no hand-written attention backward)."]),
                  _rows([(e.lhs, e.rhs) for e in equations], p), _rows(adjoints, p)]
        if d.combine is not None:
            blocks += [Paragraph(["Luong's attentional state, z_t = [c_t; h_t]:"]),
                       _rows([(e.lhs, e.rhs) for e in d.combine.forward], p)]
        sections.append(Section("Attention", "sec:attention", blocks))
    blocks = [Paragraph([f"The readout reads [{'; '.join(d.readout_input)}]; the softmax cross-entropy over the "
                         f"target vocabulary is summed over the unmasked tokens and scaled by the {model.reduction} "
                         f"reduction."])]
    sections.append(Section("Readout and loss", "sec:readout", blocks))
    blocks = [Paragraph(["The adjoint of the encoder's top-layer states collects, at every source position, "
                         "the paths below; the encoder's own adjoint recurrence then carries each one to earlier "
                         "positions."])]
    blocks.append(Display([Row(r"\overline{\bar{h}_{s}}\Big|_{\text{%s}}" % name, [p.doprint(expr)])
                           for name, _, expr in d.paths]))
    blocks.append(Paragraph(["Where each path enters: " + "; ".join(f"{name}: {where}" for name, where, _ in d.paths)
                             + "."]))
    blocks.append(Paragraph(["dL/dh_enc_s = " + " + ".join(name for name, _, _ in d.paths)
                             + " + what encoder step s+1 sends back."]))
    if numbers is not None:
        blocks.append(_decomposition_table(model, numbers))
    sections.append(Section("How the gradient reaches the encoder", "sec:paths", blocks))
    title = f"Backpropagation through a sequence-to-sequence model ({model.encoder.cell.name} encoder, " \
            f"{model.decoder.cell.name} decoder" + (f", {model.attention.score} attention)" if model.attention else ")")
    return Document(title, ["exact gradients derived symbolically by symrnn"], sections, {})


def _decomposition_table(model, numbers):
    params, src, tgt_in, tgt_out, kwargs = numbers
    paths = model.gradient_paths(params, src, tgt_in, tgt_out, **kwargs)
    names = [k for k in paths if k != "total"] + ["total"]
    norms = {k: np.linalg.norm(v, axis=-1).mean(axis=1) for k, v in paths.items()}
    S = next(iter(paths.values())).shape[0]
    rows = [[[str(s + 1)]] + [[f"{norms[k][s]:.3e}"] for k in names] for s in range(S)]
    return Table(["r"] + ["r"] * len(names), [["s"]] + [[k] for k in names], rows,
                 ["||dL/dh_enc_s|| by path (mean over the batch; padding counts as 0); the parts add up to the "
                  "total (linearity of the backward pass), their norms need not."], "tab:paths")


def _role(key):
    roles = {"emb_src": "source embeddings", "emb_tgt": "target embeddings", "out.V": "readout weights",
             "out.c": "readout bias", "attn.W_c": "Luong's combination", "attn.W_a": "attention score weights",
             "attn.U_a": "additive score: encoder side", "attn.v_a": "additive score: projection"}
    if key in roles:
        return roles[key]
    return {"enc": "encoder cell", "dec": "decoder cell", "bridge": "bridge"}.get(key.split(".")[0], "")


def seq2seq_markdown(model, numbers=None) -> str:
    from . import markdown

    doc = build_seq2seq_document(model, numbers)
    _number(doc)
    return markdown.render(doc)


def seq2seq_latex(model, numbers=None) -> str:
    from . import document

    doc = build_seq2seq_document(model, numbers)
    _number(doc)
    return document.render(doc)


def _number(doc):
    counts = {}
    for section in doc.sections:
        for block in section.blocks:
            if isinstance(block, Table) and block.label:
                counts[block.label] = len(counts) + 1


def write_seq2seq_report(model, fmt, path, numbers=None):
    """Write the report as ``md``, ``tex`` or ``pdf`` (as :func:`symrnn.report.write_report`); returns the path."""
    from . import check_format
    from .compile import INSTALL_HINT, LatexNotFoundError, check_writable, compile_pdf, latex_available, \
        write_atomic

    fmt = check_format(fmt)
    path = check_writable(path)
    if fmt == "md":
        return write_atomic(path, seq2seq_markdown(model, numbers))
    tex = seq2seq_latex(model, numbers)
    if fmt == "tex":
        return write_atomic(path, tex)
    if not latex_available():
        tex_path = write_atomic(path.with_suffix(".tex"), tex)
        raise LatexNotFoundError(f"pdflatex is not installed, so no PDF was made; the LaTeX source is in "
                                 f"{tex_path}. To make PDFs, {INSTALL_HINT}.", tex_path)
    return write_atomic(path, compile_pdf(tex, path.stem).pdf)


def plot_attention(weights, path, src_tokens=None, tgt_tokens=None, title="attention weights"):
    """Save a heat map of one sequence's attention weights ``a[t, s]`` (``(T, S)``: a row per target step) as
    PNG with matplotlib (a ``Figure`` of its own: the pyplot backend and figures are left alone);
    returns the path."""
    from matplotlib.figure import Figure

    from .compile import check_writable, write_atomic

    path = check_writable(path)
    weights = np.asarray(weights)
    T, S = weights.shape
    fig = Figure(figsize=(max(4.0, 1.5 + 0.35 * S), max(3.0, 1.2 + 0.35 * T)), dpi=120)
    ax = fig.subplots()
    image = ax.imshow(weights, cmap="viridis", vmin=0.0, vmax=max(float(weights.max()), 1e-12), aspect="auto")
    ax.set_xticks(range(S), labels=src_tokens if src_tokens is not None else [str(s + 1) for s in range(S)],
                  rotation=90, fontsize=7)
    ax.set_yticks(range(T), labels=tgt_tokens if tgt_tokens is not None else [str(t + 1) for t in range(T)],
                  fontsize=7)
    ax.set_xlabel("source token (position s, left to right)" if src_tokens is not None else "source position s")
    ax.set_ylabel("target token (step t, top to bottom)" if tgt_tokens is not None else "target step t")
    ax.set_title(title, fontsize=8)
    fig.colorbar(image, ax=ax, fraction=0.04)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    write_atomic(path, buffer.getvalue())
    return path
