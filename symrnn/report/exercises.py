"""The exercise version of a report, for teachers: chosen lines left blank, the answers at the end.

:func:`make_exercises` takes a built :class:`~symrnn.report.blocks.Document` and returns a copy in
which the right side of every display marked ``exercise`` (the adjoint recurrences, the gradients,
the step Jacobians, and the backward pass, gradients and closed form of the worked example) is a
blank line to fill in.  The
summary box and the worked example's check table, which give the answers away, move to a last
section, *Answers*, which prints every blanked line under its equation number.
"""
from __future__ import annotations

from dataclasses import replace

from .blocks import Boxed, Display, Paragraph, Ref, Row, Section, Table

BLANK = r"\underline{\qquad\qquad\qquad\qquad\qquad\qquad\qquad\qquad}"
GIVEAWAYS = ("tab:check",)  # tables whose numbers are answers


def make_exercises(document):
    """A copy of ``document`` with the exercise lines blank and an *Answers* section at the end."""
    answers, sections = [], []
    counter = [0]
    for number, section in enumerate(document.sections, 1):
        blocks, found = [], []
        for block in section.blocks:
            if isinstance(block, Display) and block.exercise:
                blanked, shown = _blank(block, counter)
                if blocks and _is_heading(blocks[-1]):  # "At the last step, t = T:": the answers need it too
                    found.append(blocks[-1])
                blocks.append(blanked)
                found.append(shown)
            elif isinstance(block, Boxed):
                blocks.append(Paragraph(["The summary of this section is left out of the exercise version; it is "
                                         "among the answers (Section ", Ref("sec:answers"), ")."]))
                found.append(block)
            elif isinstance(block, Table) and block.label in GIVEAWAYS:
                blocks.append(Paragraph(["The check of these numbers, Table ", Ref(block.label),
                                         ", is among the answers."]))
                found.append(block)
            else:
                blocks.append(block)
        sections.append(replace(section, blocks=blocks))
        if found:
            answers.append(Paragraph([f"Section {number}, {section.title}:"]))
            answers += found
    intro = Paragraph(["The lines left blank above, with the numbers they carry there (an unnumbered line of the "
                       "worked example is shown under a letter, in the order it appears):"])
    sections.append(Section("Answers", "sec:answers", [intro] + answers))
    title = document.title + " (exercises)"
    return replace(document, title=title, sections=sections)


def _is_heading(block) -> bool:
    """A short paragraph that introduces the display after it (``Step t = 2:``)."""
    if not isinstance(block, Paragraph) or not block.parts:
        return False
    text = "".join(p if isinstance(p, str) else getattr(p, "tex", "") for p in block.parts)
    return len(text) < 80 and text.rstrip().endswith(":")


def _blank(display, counter):
    """``display`` with blank right sides, and the rows it hides with their numbers for the answers."""
    blanked, shown = [], []
    for row in display.rows:
        if row.number is None:
            counter[0] += 1
            tag = _letters(counter[0])
            blanked.append(replace(row, lines=[BLANK], tag=tag))
            shown.append(replace(row, tag=tag))
        else:
            blanked.append(replace(row, lines=[BLANK]))
            shown.append(Row(row.lhs, row.lines, None, None, row.relation, tag=str(row.number)))
    return Display(blanked), Display(shown)


def _letters(k: int) -> str:
    """1 -> a, 26 -> z, 27 -> aa: the tags of unnumbered lines, never confused with equation numbers."""
    out = ""
    while k:
        k, r = divmod(k - 1, 26)
        out = chr(ord("a") + r) + out
    return out
