"""The parts of a report, independent of the output format.

:mod:`symrnn.report.sections` builds a :class:`Document` from a model once;
:mod:`symrnn.report.document` renders it as LaTeX and
:mod:`symrnn.report.markdown` as GitHub Markdown, so both say the same thing.
Prose is a list of parts: plain strings (escaped by each renderer),
:class:`Math` (inline LaTeX math), :class:`Code` and :class:`Ref` (a
reference to a numbered equation).
"""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Math:
    tex: str


@dataclass(frozen=True)
class Code:
    text: str


@dataclass(frozen=True)
class Ref:
    label: str


@dataclass
class Paragraph:
    parts: list
    answer: bool = False  # it states the answer of an exercise line (moved to the answers in the exercises)


@dataclass
class Row:
    """One display equation ``lhs = lines[0]`` continued on ``lines[1:]``; numbered unless ``label`` is None."""

    lhs: str
    lines: list
    label: str | None = None
    number: int | None = None
    relation: str = "="
    tag: str | None = None  # a number shown without a label (the answers of the exercise version)


@dataclass
class Display:
    """Rows shown together, aligned at their relation signs; ``exercise``: the exercise version of
    the report leaves their right sides blank and prints them among the answers."""

    rows: list
    exercise: bool = False


@dataclass
class Boxed:
    """A framed block (the summary): groups of aligned lines, one under the other, each line LaTeX
    with ``&`` before its relation (a line ``&\\text{...}`` is a heading)."""

    groups: list

    @property
    def lines(self) -> list:
        return [line for group in self.groups for line in group]

    def tex(self) -> list:
        """The box as display math, one framed ``aligned`` block per group (a page may break between
        two groups, as a box cannot break)."""
        return ["\\boxed{\\begin{aligned}\n" + " \\\\\n".join(g) + "\n\\end{aligned}}" for g in self.groups]


@dataclass
class Table:
    """``columns`` in LaTeX column syntax (``l``, ``r``, ``p{6cm}``); cells are lists of parts."""

    columns: list
    header: list
    rows: list
    caption: list = field(default_factory=list)
    label: str | None = None


@dataclass
class Figure:
    tikz: str
    mermaid: str
    caption: list
    label: str
    mermaid_caption: list | None = None  # what the Mermaid drawing shows, when it differs from the TikZ one


@dataclass
class Section:
    title: str
    label: str
    blocks: list = field(default_factory=list)
    subsections: list = field(default_factory=list)


@dataclass
class Document:
    title: str
    subtitle: list
    sections: list
    numbers: dict  # equation label -> number
