"""The one builder of every report: :data:`SECTIONS` lists every section in order with the tags that call
for it, :func:`report_tags` reads the tags from a model's :meth:`parts`, and :func:`build_sections` asks a
section writer (:class:`~symrnn.report.sections.ReportBuilder`, :class:`~symrnn.report.wiring.WiringReportBuilder`,
:class:`~symrnn.report.seq2seq.Seq2SeqSections`) for each.  A new section is a row here and a writer's method."""
from __future__ import annotations

from .blocks import Document

#: ``(method of the section writer, the tags that call for it)``, in the order of the reports.
SECTIONS = (
    ("introduction", {"cells"}), ("notation", {"cells"}), ("model_notation", {"seq2seq"}),
    ("encoder_section", {"seq2seq"}), ("bridge_section", {"seq2seq"}), ("decoder_section", {"seq2seq"}),
    ("attention_section", {"attention"}), ("readout_section", {"seq2seq"}), ("paths_section", {"seq2seq"}),
    ("forward", {"cells"}), ("loss", {"cells"}), ("graph", {"cells"}), ("identities", {"one"}),
    ("merge_section", {"wired", "merge"}), ("adjoints", {"cells"}), ("sensitivities", {"cells"}),
    ("layers_section", {"wired"}), ("gradients", {"cells"}), ("summary_section", {"one"}), ("jacobians", {"one"}),
    ("example", {"one"}), ("example_section", {"seq2seq"}),
)


def report_tags(parts) -> set:
    """The tags of a model's parts: the kinds of its parts, and ``seq2seq``, or ``cells`` with ``one`` or ``wired``."""
    kinds = {p.kind for p in parts}
    if kinds & {"bridge", "attention"}:
        return kinds | {"seq2seq"}
    return kinds | {"cells", "one" if [p.row for p in parts if p.kind == "cell"] == [None] else "wired"}


def build_sections(writer) -> Document:
    """The :class:`Document` of the model ``writer`` describes (its ``parts``): the sections of
    :data:`SECTIONS` its tags call for, each written by ``writer.section(name)``."""
    tags = report_tags(writer.parts)
    sections = [writer.section(name) for name, needs in SECTIONS if needs <= tags]
    return Document(writer.title(), writer.subtitle(), [s for s in sections if s is not None], dict(writer.numbers))
