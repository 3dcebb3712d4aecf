"""The derivation report of a sequence-to-sequence model (:class:`symrnn.models.seq2seq.Seq2Seq`).

Built from :class:`symrnn.models.seq2seq.Seq2SeqDerivation` (every equation printed from the SymPy objects
the computation uses: the cells' derivations, the stateless blocks', the attention program's rules)
into the format-independent :class:`~symrnn.report.blocks.Document`, rendered as Markdown or LaTeX.
With numbers (``params`` and a batch) it adds the measured decomposition of ``dL/dh_enc_s`` by path.
"""
from __future__ import annotations

import io
from dataclasses import replace

import numpy as np
import sympy as sp

from .blocks import Code, Display, Document, Math, Paragraph, Ref, Row, Section, Table
from .latex import break_lines, tex_width
from .seq2seq_notation import CONVENTION, Seq2SeqPrinter, parts, seq2seq_part  # noqa: F401 (the printer is public here)

LINE_WIDTH = 60.0  # what fits on one line (units of latex.tex_width), as in the cell reports


def _rows(pairs, printer, width=LINE_WIDTH):
    """Rows of ``lhs = rhs``, long right sides broken into lines that fit the page."""
    rows = []
    for lhs, rhs in pairs:
        left = lhs if isinstance(lhs, str) else printer.doprint(lhs)
        first = width - tex_width(left) - 3.0
        lines = break_lines(rhs, printer, first, first - 2.5) if isinstance(rhs, sp.Basic) else [str(rhs)]
        rows.append(Row(left, lines))
    return Display(rows)


def _part(d, name):
    rows, printer = seq2seq_part(d, name)
    return _rows(rows, printer) if rows else None


def _title(model):
    return (f"Backpropagation through a sequence-to-sequence model ({model.encoder.cell.name} encoder, "
            f"{model.decoder.cell.name} decoder" + (f", {model.attention.score} attention, {model.style.capitalize()} "
                                                    f"style)" if model.attention else ")"))


def _notation(model):
    shapes = Table(["l", "l", "l"], [["parameter"], ["shape"], ["role"]],
                   [[[Code(k)], [str(v)], [_role(k)]] for k, v in model.param_shapes.items()],
                   ["Parameters and their gradients (same keys)."], "tab:params")
    symbols = Table(["l", r"p{0.7\linewidth}"], [["symbol"], ["meaning"]],
                    [[[Math(tex)], parts(text)] for tex, text in CONVENTION],
                    ["The notation: encoder states, decoder states and adjoints are told apart by their symbols."],
                    "tab:notation")
    return Section("The model and its notation", "sec:model", [Paragraph(_describe(model)), shapes, symbols])


def _describe(model):
    """The model in words (the repr is code; the report says what it is)."""
    enc = model.encoder
    layers = f"{enc.num_layers} layer{'s' if enc.num_layers > 1 else ''}" + (", bidirectional" if model.top.bidirectional
                                                                             else "")
    bridge = {"copy": "copied into the decoder's initial state", "linear": "mapped linearly to the decoder's initial "
              "state", "tanh": "mapped to the decoder's initial state by a tanh layer",
              "none": "not passed on (the decoder starts from zero)"}[model.bridge_mode]
    text = (f"A {enc.cell.name} encoder ({layers}) reads the embedded source tokens; its final state is {bridge}. "
            f"A {model.decoder.cell.name} decoder reads the embedded previous target token")
    if model.context:
        text += " and the encoder's summary at every step (Cho et al. 2014)"
    if model.attention is not None:
        who = ("Luong et al. 2015: the query is the current decoder state and a combination feeds the readout"
               if not model.bahdanau else "Bahdanau et al. 2015: the query is the previous decoder state and the "
               "context enters the step")
        text += f", with {model.attention.score} attention over the encoder states ({who})"
    sizes = f" Sizes: E = {model.E_tgt}, encoder width {model.C}, decoder width {model.H_dec}; the equations do " \
            "not depend on them."
    return [text + "." + sizes]


def _above(model, d):
    """What reaches the decoder's state from above (g_t), as LaTeX."""
    parts = []
    if model.combine is not None:
        parts.append(r"\bar{h}_{t}\big|_{\text{combination}}")
    elif any(name == "h" for name, _ in model.readout_pieces):
        parts.append(r"\bar{h}_{t}\big|_{\text{readout}}")
    if d.attention is not None:
        parts.append(r"\bar{h}_{t}\big|_{\text{attention}}" if not model.bahdanau
                     else r"\bar{h}_{t}\big|_{\text{attention at } t+1}")
    return " + ".join(parts) or "0"


def _cells(model, d):
    enc, dec = model.encoder.cell.name, model.decoder.cell.name
    encoder = Section(f"Encoder: {enc}", "sec:encoder", [
        Paragraph([f"Each direction of each of the {model.encoder.num_layers} layer(s) runs these equations over "
                   "the source positions ", Math("s"), " (the backward direction over each sequence reversed "
                   "within its length); ", Math("g_{s}"), " is what reaches the top layer's state from outside "
                   "its recurrence: the sum of the paths of the last section."]),
        _part(d, "encoder"), _part(d, "encoder_adjoints")])
    pieces = [r"\mathrm{emb}(y_{t-1})"] + ([r"z^{\mathrm{enc}}"] if model.context else []) + (
        ["c_{t}"] if model.bahdanau else [])
    decoder = Section(f"Decoder: {dec}", "sec:decoder", [
        Paragraph(["Teacher forcing: the input at step ", Math("t"), " is ",
                   Math(r"x_{t} = \left[" + "; ".join(pieces) + r"\right]"), ", and ",
                   Math("g_{t} = " + _above(model, d)), " (the contributions of the sections below)."]),
        _part(d, "decoder"), _part(d, "decoder_adjoints")])
    return encoder, decoder


def _bridge(model, d):
    z = " and ".join(f"the {'forward' if x == 'fwd' else 'backward'} direction's final state"
                     for x in model.top.directions)
    blocks = [Paragraph(["The bridge reads the encoder's summary ", Math(r"z^{\mathrm{enc}}"), f": {z} of the top "
                         "layer, each at its sequence's last real token (split back over them in the backward "
                         "pass). It is applied once, so its gradients have no sum over steps."])]
    if d.bridge is not None:
        blocks += [_part(d, "bridge"), _part(d, "bridge_adjoint")]
    elif model.bridge_mode == "copy":
        blocks.append(Paragraph(["It copies the summary: ", Math(r"h_{0} = z^{\mathrm{enc}}"), ", so ",
                                 Math(r"\bar{z}^{\mathrm{enc}} = \bar{h}_{0}"), "."]))
    else:
        blocks.append(Paragraph(["There is none: the decoder starts from zero."]))
    return Section("Bridge", "sec:bridge", blocks)


def _attention(model, d):
    if d.attention is None:
        return None
    query = r"h_{t-1}" if model.bahdanau else r"h_{t}"
    blocks = [Paragraph([f"The {model.attention.score} score in {model.style.capitalize()}'s style: the query is ",
                         Math(query), ". Each line is one operation over source positions, and each adjoint "
                         "below is that operation's derivative rule in symrnn (no attention backward is written "
                         "by hand)."]),
              _part(d, "attention"),
              Paragraph(["Its adjoints, from the last line back; the two lines with a bar and a vertical stroke "
                         "are contributions to the adjoints of the decoder and encoder states:"]),
              _part(d, "attention_adjoints")]
    if d.combine is not None:
        blocks += [Paragraph(["Luong's combination reads the context and the decoder state, and its adjoint splits "
                              "back over the two:"]),
                   _part(d, "combine"), _part(d, "combine_adjoints")]
    return Section("Attention", "sec:attention", blocks)


def _readout(model, d):
    reads = {"htilde": r"\tilde{h}_{t}", "h": "h_{t}", "ctx": "c_{t}", "z": r"z^{\mathrm{enc}}"}
    read = r"\left[" + "; ".join(reads[n] for n, _ in model.readout_pieces) + r"\right]"
    return Section("Readout and loss", "sec:readout", [
        Paragraph(["The readout reads ", Math(read), "; the softmax cross-entropy over the target vocabulary is "
                   f"summed over the unmasked target tokens and scaled by the {model.reduction} reduction (a "
                   "padded token sends no gradient):"]),
        _part(d, "readout"), _part(d, "readout_adjoints")])


class Seq2SeqSections:
    """Writes the sections of a sequence-to-sequence report that :func:`symrnn.report.builder.build_sections`
    chooses from the model's parts; ``numbers`` is ``(params, src, tgt_in, tgt_out, kwargs)`` or None."""

    def __init__(self, model, numbers=None):
        from .seq2seq_example import example_section

        d, (encoder, decoder) = model.derive(), _cells(model, model.derive())
        self.model, self.parts, self.numbers = model, model.parts(), {}
        self.writers = {"model_notation": lambda: _notation(model), "encoder_section": lambda: encoder,
                        "bridge_section": lambda: _bridge(model, d), "decoder_section": lambda: decoder,
                        "attention_section": lambda: _attention(model, d),
                        "readout_section": lambda: _readout(model, d),
                        "paths_section": lambda: _paths(model, d, numbers),
                        "example_section": lambda: example_section(model)}

    def title(self):
        return _title(self.model)

    @staticmethod
    def subtitle():
        return ["exact gradients derived symbolically by symrnn"]

    def section(self, name):
        """The section ``name`` without the blocks it leaves out (None: a part with nothing to print)."""
        section = self.writers[name]()
        return None if section is None else replace(section, blocks=[b for b in section.blocks if b is not None])


def build_seq2seq_document(model, numbers=None) -> Document:
    """The report's :class:`Document` (:func:`symrnn.report.builder.build_sections`); ``numbers`` is
    ``(params, src, tgt_in, tgt_out, kwargs)`` or None."""
    from .builder import build_sections

    return build_sections(Seq2SeqSections(model, numbers))


def _paths(model, d, numbers):
    where = "; ".join(f"{name}: {place}" for name, place, _ in d.paths)
    where = where.replace("s = S_n", "$s = S_{n}$").replace("s = 1 ", "$s = 1$ ").replace("position s", "position $s$")
    blocks = [Paragraph(["The adjoint of the encoder's top-layer states collects, at every source position, the "
                         "paths below; the encoder's own adjoint recurrence then carries each one to earlier "
                         "positions:"]),
              _part(d, "paths"),
              Paragraph(["Where each path enters: ", *parts(where), ". So ", Math("g_{s}"), " in the encoder's "
                         "recurrence is the sum of these paths, and the whole adjoint ",
                         Math(r"\bar{h}^{\mathrm{enc}}_{s}"), " adds what position ", Math("s + 1"),
                         " sends back (the encoder's recurrence of Section ", Ref("sec:encoder"), ")."])]
    if numbers is not None:
        blocks.append(_decomposition_table(model, numbers))
    return Section("How the gradient reaches the encoder", "sec:paths", blocks)


#: ``(stem, Seq2Seq arguments)`` of the sequence-to-sequence reports in ``derivations/``.
SEQ2SEQ_REPORTS = [
    ("seq2seq_gru-encoder-decoder", {"encoder_cell": "gru", "decoder_cell": "gru", "bridge": "tanh"}),
    ("seq2seq_gru-luong-general-attention", {"encoder_cell": "gru", "decoder_cell": "gru", "attention": "general"}),
    ("seq2seq_gru-bahdanau-additive-attention", {"encoder_cell": "gru", "decoder_cell": "gru",
                                                  "attention": "additive", "attention_style": "bahdanau"}),
]
SEQ2SEQ_SIZES = {"src_vocab": 5, "tgt_vocab": 3, "E": 3, "H": 4}  # the report is symbolic; sizes build the model


def seq2seq_report_model(spec):
    """The :class:`~symrnn.models.seq2seq.Seq2Seq` of one entry of :data:`SEQ2SEQ_REPORTS`."""
    from ..models.seq2seq import Seq2Seq

    spec = dict(spec)
    return Seq2Seq(spec.pop("encoder_cell"), spec.pop("decoder_cell"), **SEQ2SEQ_SIZES, **spec)


def _decomposition_table(model, numbers):
    params, src, tgt_in, tgt_out, kwargs = numbers
    paths = model.gradient_paths(params, src, tgt_in, tgt_out, **kwargs)
    names = [k for k in paths if k != "total"] + ["total"]
    norms = {k: np.linalg.norm(v, axis=-1).mean(axis=1) for k, v in paths.items()}
    S = next(iter(paths.values())).shape[0]
    rows = [[[str(s + 1)]] + [[f"{norms[k][s]:.3e}"] for k in names] for s in range(S)]
    return Table(["r"] + ["r"] * len(names), [["s"]] + [[k] for k in names], rows,
                 ["The norm ", Math(r"\lVert \bar{h}^{\mathrm{enc}}_{s} \rVert"), " by path (mean over the batch; "
                  "padding counts as 0); the parts add up to the total (the backward pass is linear), their norms "
                  "need not."], "tab:paths")


def _role(key):
    roles = {"emb_src": "source embeddings", "emb_tgt": "target embeddings", "out.V": "readout weights",
             "out.c": "readout bias b_o", "attn.W_c": "Luong's combination", "attn.W_a": "attention score weights",
             "attn.U_a": "additive score: encoder side", "attn.v_a": "additive score: projection"}
    if key in roles:
        return roles[key]
    return {"enc": "encoder cell", "dec": "decoder cell", "bridge": "bridge"}.get(key.split(".")[0], "")


def write_seq2seq_report(model, fmt, path, numbers=None):
    """Write the report as ``md``, ``tex`` or ``pdf`` (as :func:`symrnn.report.write_report`, which it is with
    ``numbers``: the measured decomposition of the encoder's gradient by path); returns the path."""
    from . import write_document

    return write_document(build_seq2seq_document(model, numbers), fmt, path)


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
