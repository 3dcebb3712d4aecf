"""The exercise version of a report, for teachers: chosen lines left blank, the answers at the end.

:func:`make_exercises` takes a built :class:`~symrnn.report.blocks.Document` and returns a copy in
which the right side of every display marked ``exercise`` (the adjoint recurrences, the gradients,
the step Jacobians, and the backward pass, gradients and closed form of the worked example) is a
blank line to fill in.  The
summary box and the worked example's check table, which give the answers away, move to a last
section, *Answers*, which prints every blanked line under its equation number.  With
``answers_apart=True`` the answers are a document of their own (the answer sheet a teacher keeps), and
:func:`symrnn.report.write_report` writes it beside the exercises as ``<name>-answers.<ext>``.
"""
from __future__ import annotations

from dataclasses import replace

from .blocks import Boxed, Display, Paragraph, Ref, Row, Section, Table
from .sensitivities import LABEL as SENSITIVITIES

BLANK = r"\underline{\qquad\qquad\qquad\qquad\qquad\qquad\qquad\qquad}"
GIVEAWAYS = ("tab:check",)  # tables whose numbers are answers


def make_exercises(document, answers_apart=False):
    """A copy of ``document`` with the exercise lines blank and an *Answers* section at the end; with
    ``answers_apart``, ``(exercises, answers)``: two documents, the answers in the second."""
    where = ["the answer sheet"] if answers_apart else ["the answers (Section ", Ref("sec:answers"), ")"]
    answers, sections = [], []
    counter = [0]
    for number, section in enumerate(document.sections, 1):
        if section.label == SENSITIVITIES:  # its tangent equations hold every coefficient the blanked adjoints need
            sections.append(replace(section, blocks=[Paragraph(
                ["Its equations give the coefficients of the adjoint recurrences away; they are "
                 + ("on " if answers_apart else "among "), *where, "."])]))
            answers += [Paragraph([f"Section {number}, {section.title}:"])] + list(section.blocks)
            continue
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
                                         + ("on " if answers_apart else "among "), *where, "."]))
                found.append(block)
            elif isinstance(block, Paragraph) and block.answer:  # it states a blanked line's answer
                found.append(block)
            elif isinstance(block, Table) and block.label in GIVEAWAYS:
                blocks.append(Paragraph(["The check of these numbers is on the answer sheet."] if answers_apart else
                                        ["The check of these numbers, Table ", Ref(block.label),
                                         ", is among the answers."]))
                found.append(block)
            else:
                blocks.append(block)
        sections.append(replace(section, blocks=blocks))
        if found:
            answers.append(Paragraph([f"Section {number}, {section.title}:"]))
            answers += found
    intro = Paragraph([f"The lines left blank {'in the exercises' if answers_apart else 'above'}, with the numbers "
                       "they carry there (an unnumbered line of the worked example is shown under a letter, in the "
                       "order it appears):"])
    answer_section = Section("Answers", "sec:answers", [intro] + answers)
    title = document.title + " (exercises)"
    if answers_apart:
        numbers = _numbering(document)
        exercises = replace(document, title=title, sections=sections)
        sheet = replace(document, title=document.title + " (answers to the exercises)", sections=[answer_section])
        return _resolved(exercises, numbers, "on the answer sheet"), _resolved(sheet, numbers, "of the exercises")
    sections.append(answer_section)
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


def _numbering(document) -> dict:
    """``label -> "Section 3"``, ``"Table 2"``, ``"(7)"``: the numbers the full report gives its labels."""
    out, counts = {}, {"fig": 0, "tab": 0}
    for k, section in enumerate(document.sections, 1):
        out[section.label] = f"Section {k}"
        for block in section.blocks:
            label = getattr(block, "label", None)
            if isinstance(block, Table) or type(block).__name__ == "Figure":
                if label:
                    kind = label.split(":")[0]
                    counts[kind] = counts.get(kind, 0) + 1
                    out[label] = f"{'Table' if kind == 'tab' else 'Figure'} {counts[kind]}"
    out.update({label: f"({n})" for label, n in document.numbers.items()})
    return out


def _labels(document) -> set:
    labels = {s.label for s in document.sections}
    for section in document.sections:
        for block in section.blocks:
            labels.add(getattr(block, "label", None))
            labels.update(row.label for row in getattr(block, "rows", []) if isinstance(row, Row) and row.label)
    return labels


def _resolved(document, numbers, elsewhere):
    """``document`` with each reference to a label it does not hold written out as text: the number it has in
    the full report and where it now is (the exercises and their answers are two documents)."""
    present = _labels(document)

    def parts(items):
        out = []
        for part in items:
            if isinstance(part, Ref) and part.label not in present:
                number = numbers.get(part.label, "the full report")
                kind, _, _ = number.partition(" ")
                if out and isinstance(out[-1], str) and out[-1].endswith(kind + " "):  # "Table " + Ref
                    out[-1] = out[-1][:-len(kind) - 1]
                text = (f"the {kind.lower()} {elsewhere}" if kind in ("Table", "Figure", "Section")
                        and not elsewhere.startswith("of") else f"{number} {elsewhere}")
                starts = not out or (isinstance(out[-1], str) and out[-1].rstrip().endswith((".", ":"))) or out[-1] == ""
                out.append(text[0].upper() + text[1:] if starts else text)
            else:
                out.append(part)
        return out

    def block(b):
        if isinstance(b, Paragraph):
            return replace(b, parts=parts(b.parts))
        if isinstance(b, Table):
            return replace(b, caption=parts(b.caption), rows=[[parts(cell) for cell in row] for row in b.rows])
        return b

    sections = [replace(s, blocks=[block(b) for b in s.blocks]) for s in document.sections]
    return replace(document, sections=sections)
