"""Derivation reports: the BPTT derivation of a model as LaTeX, PDF or Markdown.

>>> import symrnn as sr
>>> from symrnn.report import latex_document
>>> tex = latex_document(sr.Model("rnn-tanh", D=3, H=4, K=3))
>>> r"\\section{Adjoint recurrences}" in tex
True

The report of a model is built once from its symbolic objects
(:mod:`~symrnn.report.sections`: the cell, the
:class:`~symrnn.engine.bptt.Derivation`, the unrolled graph and the worked example)
and rendered by :mod:`~symrnn.report.document` (LaTeX) or
:mod:`~symrnn.report.markdown`; :mod:`~symrnn.report.latex` holds the
printer, :mod:`~symrnn.report.tikz` the figure,
:mod:`~symrnn.report.wiring` the report of a stacked or bidirectional model and
:mod:`~symrnn.report.compile` the file handling and the LaTeX runs.
"""
from __future__ import annotations

from pathlib import Path

from ..engine.bptt import Derivation
from ..errors import ParameterError, UnknownNameError
from . import document as _latex
from . import markdown as _markdown
from .compile import (INSTALL_HINT, LatexError, LatexNotFoundError, OutputPathError, check_writable,
                      compile_pdf, latex_available, write_atomic)
from .latex import ReportLatexPrinter, break_lines, latex
from .builder import report_tags
from .exercises import make_exercises
from .sections import build_document
from .wiring import build_wiring_document

FORMATS = ("tex", "pdf", "md")
REPORT_SIZES = {"D": 3, "H": 4, "K": 3}  # the report is symbolic; the sizes only build the Model

__all__ = ["write_report", "write_all", "latex_document", "markdown_document", "derivation_latex",
           "build_document", "latex", "ReportLatexPrinter", "report_models", "FORMATS",
           "build_wiring_document", "wiring_report_models", "wiring_latex_document", "wiring_markdown_document",
           "OutputPathError", "LatexError", "LatexNotFoundError", "model_document", "write_document", "display"]


def report_kind(model) -> str:
    """Which report ``model``'s parts call for: ``cell`` (one cell over time: the full report of the cell),
    ``wiring`` (cells wired in layers and directions) or ``seq2seq`` (an encoder, a bridge or attention and
    a decoder)."""
    parts = model.parts() if callable(getattr(model, "parts", None)) else None
    if parts is None:
        raise ParameterError(f"A report needs a symrnn.Model, StackedModel or Seq2Seq, got "
                             f"{type(model).__name__}: build one first (symrnn.Model('lstm', D=3, H=4)).")
    tags = report_tags(parts)
    return "seq2seq" if "seq2seq" in tags else "cell" if "one" in tags else "wiring"


def model_document(model, exercises=False, sensitivities=True):
    """The :class:`~symrnn.report.blocks.Document` of ``model`` (any model: the report's one builder picks its
    sections by :func:`report_kind`); ``exercises``: the version for teachers; ``sensitivities=False`` leaves
    out the sensitivity recurrence (real-time recurrent learning) beside the adjoints (a bidirectional or
    sequence-to-sequence model's report has none)."""
    kind = report_kind(model)
    if kind != "cell":
        if exercises:
            raise UnknownNameError("The exercise version is made for the report of one cell (symrnn.Model); "
                                   "a stacked, bidirectional or sequence-to-sequence model's report has none. "
                                   "Leave out exercises (--exercises) or report one layer's cell.")
        if kind == "seq2seq":
            from .seq2seq import build_seq2seq_document

            return build_seq2seq_document(model)
        return build_wiring_document(model, sensitivities=sensitivities)
    document = build_document(model, sensitivities=sensitivities)
    return make_exercises(document) if exercises else document


def latex_document(model, exercises=False, sensitivities=True) -> str:
    """The derivation report of ``model`` as a complete LaTeX document.

    With ``exercises=True``, the exercise version: the adjoint recurrences, the gradients and the
    worked example's backward pass are blank lines to fill in, with the answers at the end.  With
    ``sensitivities=False``, without the sensitivity recurrence (:mod:`symrnn.report.sensitivities`)."""
    return _latex.render(model_document(model, exercises, sensitivities))


def markdown_document(model, exercises=False, sensitivities=True) -> str:
    """The derivation report of ``model`` as GitHub Markdown (``$$`` math, a Mermaid graph);
    ``exercises`` and ``sensitivities`` as in :func:`latex_document`."""
    return _markdown.render(model_document(model, exercises, sensitivities))


def check_format(fmt) -> str:
    if fmt not in FORMATS:
        raise UnknownNameError(f"Unknown report format {fmt!r}; expected one of {list(FORMATS)}.")
    return fmt


def document_text(model, fmt, exercises=False, sensitivities=True) -> str:
    """The report of ``model`` as text, ``tex`` or ``md`` (what :func:`write_report` writes)."""
    fmt = check_format(fmt)
    return (markdown_document if fmt == "md" else latex_document)(model, exercises, sensitivities)


def answers_path(path) -> Path:
    """Where :func:`write_report` puts the answers of an exercise version written to ``path``:
    ``lstm-exercises.pdf`` -> ``lstm-exercises-answers.pdf``."""
    path = Path(path)
    return path.with_name(f"{path.stem}-answers{path.suffix}")


def write_report(model, fmt, path, exercises=False, sensitivities=True) -> Path:
    """Write the report of ``model`` to ``path`` as ``fmt`` (``tex``, ``pdf`` or ``md``); returns the path.

    ``model`` is a :class:`~symrnn.models.model.Model`, a :class:`~symrnn.models.wiring.StackedModel`
    (its report is built by :mod:`symrnn.report.wiring`) or a :class:`~symrnn.models.seq2seq.Seq2Seq`
    (:func:`symrnn.report.seq2seq.write_seq2seq_report`).  ``exercises=True`` writes the exercise
    version of a :class:`~symrnn.models.model.Model`'s report to ``path`` and its answers, a document of
    their own, beside it (:func:`answers_path`).  ``sensitivities=False`` leaves out the sensitivity
    recurrence (real-time recurrent learning) printed beside the adjoints.

    The path is checked before any work. A PDF is compiled in a temporary
    directory; when pdflatex is missing, or fails, the ``.tex`` is written next
    to ``path`` and :class:`LatexNotFoundError` or :class:`LatexError` says so.
    """
    fmt = check_format(fmt)
    if exercises and report_kind(model) == "seq2seq":
        raise UnknownNameError("The exercise version is made for the report of one cell (symrnn.Model); "
                               "a sequence-to-sequence model's report has none. Leave out exercises.")
    path = check_writable(path)
    if not exercises:
        leave_out = {} if sensitivities else {"sensitivities": False}
        return _write_text(fmt, path, lambda: (markdown_document if fmt == "md" else latex_document)(model, **leave_out))
    if report_kind(model) != "cell":
        model_document(model, exercises=True)  # the error message for a stacked model
    questions, answers = make_exercises(build_document(model, sensitivities=sensitivities), answers_apart=True)
    check_writable(answers_path(path))
    write_document(answers, fmt, answers_path(path))
    return write_document(questions, fmt, path)


def write_document(document, fmt, path) -> Path:
    """Write a built :class:`~symrnn.report.blocks.Document` (of any model: :func:`model_document`) to ``path`` as
    ``md``, ``tex`` or ``pdf``: the one writer of every report."""
    fmt = check_format(fmt)
    path = check_writable(path)
    return _write_text(fmt, path, lambda: (_markdown if fmt == "md" else _latex).render(document))


def _write_text(fmt, path, text) -> Path:
    """Write ``text()`` (the Markdown or the LaTeX) to ``path``; a PDF is compiled from the LaTeX."""
    if fmt in ("md", "tex"):
        return write_atomic(path, text())
    tex = text()
    tex_path = path.with_suffix(".tex")
    if not latex_available():
        write_atomic(tex_path, tex)
        raise LatexNotFoundError(f"pdflatex is not installed, so no PDF was made; the LaTeX source is in "
                                 f"{tex_path}. To make PDFs, {INSTALL_HINT}; then run "
                                 f"`latexmk -pdf {tex_path.name}`.", tex_path)
    try:
        result = compile_pdf(tex, path.stem)
    except LatexError as exc:
        write_atomic(tex_path, tex)
        raise LatexError(f"{exc}\nThe LaTeX source is in {tex_path}.", exc.log_excerpt, tex_path) from None
    return write_atomic(path, result.pdf)


def report_models():
    """``(cell, architecture)`` of the reports in ``derivations/``: every built-in cell with
    many-to-many, and rnn-tanh with every other architecture."""
    from ..models.architectures import ARCHITECTURES
    from ..engine.cells import BUILTIN_CELLS

    pairs = [(cell, "many-to-many") for cell in BUILTIN_CELLS]
    return pairs + [("rnn-tanh", arch) for arch in ARCHITECTURES if arch != "many-to-many"]


def report_stem(cell: str, architecture: str) -> str:
    return f"{cell}_{architecture}"


def write_all(out_dir, progress=None) -> list:
    """Write the ``.tex`` and ``.md`` reports of :func:`report_models`, :func:`wiring_report_models` and
    :data:`~symrnn.report.seq2seq.SEQ2SEQ_REPORTS` and an index to ``out_dir``; ``progress(stem)``
    (optional) is called before each report is built."""
    from ..models.model import Model
    from .seq2seq import SEQ2SEQ_REPORTS, seq2seq_report_model

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    check_writable(out / "README.md")

    def what(spec, shown):
        return ", ".join(f"{k}={v}" for k, v in spec.items() if shown(k))

    reports = [(report_stem(c, a), lambda c=c, a=a: Model(c, architecture=a, **REPORT_SIZES), "index", f"| {c} | {a} |")
               for c, a in report_models()]
    reports += [(stem, lambda spec=spec: _wiring_model(spec), "wiring",
                 f"| {spec['cell']} | {what(spec, lambda k: k != 'cell')} |") for stem, spec in wiring_report_models()]
    reports += [(stem, lambda spec=spec: seq2seq_report_model(spec), "seq2seq", f"| {spec['encoder_cell']} / "
                 f"{spec['decoder_cell']} | {what(spec, lambda k: not k.endswith('_cell'))} |")
                for stem, spec in SEQ2SEQ_REPORTS]
    written, tables = [], {"index": [], "wiring": [], "seq2seq": []}
    for stem, make, table, row in reports:
        if progress is not None:
            progress(stem)
        doc = model_document(make())
        written.append(write_atomic(out / f"{stem}.tex", _latex.render(doc)))
        written.append(write_atomic(out / f"{stem}.md", _markdown.render(doc)))
        tables[table].append(f"{row} [{stem}.md]({stem}.md) | [{stem}.tex]({stem}.tex) |")
    index, wiring, seq2seq = tables.values()
    readme = ["# Derivations", "",
              "Generated by `symrnn derive-all --out derivations` (`make derivations`); do not edit by hand.",
              "`tests/test_reports.py` regenerates them and fails on any difference.", "",
              "Every built-in cell with the many-to-many architecture, and rnn-tanh with every "
              "architecture; all with the cross-entropy loss and sum reduction. Any other combination: "
              "`symrnn derive MODEL --architecture A --loss L --format pdf -o PATH`.", "",
              "| cell | architecture | Markdown | LaTeX |", "|:--|:--|:--|:--|", *index, "",
              "Stacked and bidirectional models (`symrnn.StackedModel`; the figure shows one layer):", "",
              "| cell | wiring | Markdown | LaTeX |", "|:--|:--|:--|:--|", *wiring, "",
              "Sequence-to-sequence models (`symrnn.Seq2Seq`; `symrnn derive gru --decoder gru --attention general "
              "-o report.pdf`):", "",
              "| encoder / decoder | blocks | Markdown | LaTeX |", "|:--|:--|:--|:--|", *seq2seq]
    written.append(write_atomic(out / "README.md", "\n".join(readme) + "\n"))
    return written


def wiring_report_models():
    """``(stem, StackedModel arguments)`` of the stacked and bidirectional reports in ``derivations/``."""
    from .wiring import WIRING_REPORTS

    return list(WIRING_REPORTS)


def _wiring_model(spec):
    from ..models.wiring import StackedModel

    spec = dict(spec)
    return StackedModel(spec.pop("cell"), **REPORT_SIZES, **spec)


def wiring_latex_document(model) -> str:
    """A :class:`~symrnn.models.wiring.StackedModel`'s report as LaTeX (:func:`latex_document`)."""
    return latex_document(model)


def wiring_markdown_document(model) -> str:
    """A :class:`~symrnn.models.wiring.StackedModel`'s report as Markdown (:func:`markdown_document`)."""
    return markdown_document(model)


def _parameter_order(derivation):
    """Cell parameters in declaration order, then the readout's (a Derivation's dict order may vary)."""
    declared = list(derivation.cell.params)
    return lambda name: (declared.index(name) if name in declared else len(declared), name)


def derivation_latex(derivation) -> str:
    """The equations of a :class:`~symrnn.engine.bptt.Derivation` as one ``$$ aligned $$`` block (for Jupyter),
    with the names of the model's report: the readout bias ``b_y`` beside an LSTM's cell state ``c``,
    each gate's pre-activation adjoint named (``bar a^i``)."""
    model = getattr(derivation, "model", None)
    if model is not None and report_kind(model) == "cell":
        from .sections import ReportBuilder

        builder = ReportBuilder(model)
        p, name, named = builder.p, builder.name, builder.name_gates
        gates = [(symbol, product) for symbol, product in builder.gates.values()]
    else:
        p = ReportLatexPrinter()
        name, named, gates = p.name_tex, (lambda e: e), []
    rows = [(r"\text{forward}", None)]
    rows += [(p.doprint(e.lhs), e.rhs) for e in derivation.forward]
    rows.append((r"\text{adjoints}", None))
    rows += [(p.doprint(a.lhs), named(a.rhs)) for a in derivation.adjoints]
    rows += [(p.doprint(symbol), product) for symbol, product in gates]
    rows.append((r"\text{gradients}", None))
    names = sorted(derivation.gradients, key=_parameter_order(derivation))
    rows += [(r"\frac{\partial L}{\partial %s}" % name(n), named(derivation.gradients[n])) for n in names]
    lines = []
    for lhs, rhs in rows:
        if rhs is None:
            lines.append(rf"&{lhs}")
            continue
        broken = break_lines(rhs, p, 90.0, 86.0)
        lines.append(f"{lhs} &= {broken[0]}")
        lines += [rf"&\quad {{}}{line}" for line in broken[1:]]
    return "$$\n\\begin{aligned}\n" + " \\\\\n".join(lines) + "\n\\end{aligned}\n$$"


# Jupyter renders a derivation as its equations: the report layer attaches the method to the
# engine's class when it is imported (the engine never imports a report).
Derivation._repr_latex_ = derivation_latex
from . import display  # noqa: E402  (attaches Derivation.show and Derivation.latex)
