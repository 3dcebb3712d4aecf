"""The Markdown rendering of a report, for GitHub.

Display math is set in ``$$`` blocks (``aligned`` for broken lines, ``\\tag``
for the equation numbers of the LaTeX version), inline math in ``$...$``, the
unrolled graph as a Mermaid flowchart and tables as pipe tables.
"""
from __future__ import annotations

import re

from .blocks import Boxed, Code, Display, Figure, Math, Paragraph, Ref, Table

_SPECIAL = "\\`*_[]<>|"
# inside display maths GitHub's Markdown pass still reads a backslash before ASCII punctuation as an escape
# (a row break \\ becomes \, the thin space \, becomes a comma): github_math doubles those backslashes
_ESCAPED = re.compile(r"\\\\|\\([!-/:-@\[\]^_`{-~])")


def github_math(tex: str) -> str:
    """``tex`` as GitHub needs it inside ``$$``: ``\\\\`` written four times, a backslash before other ASCII
    punctuation (``\\,``, ``\\{``, ``\\|``) twice, so that Markdown's escapes give back the LaTeX."""
    return _ESCAPED.sub(lambda m: "\\" * 4 if m.group(1) is None else "\\\\" + m.group(1), tex)


def display_block(tex: str) -> str:
    """One ``$$`` block of GitHub Markdown."""
    return "$$\n" + github_math(tex) + "\n$$"


def escape(text: str) -> str:
    return "".join("\\" + ch if ch in _SPECIAL else ch for ch in text)


class MarkdownRenderer:
    def __init__(self, document):
        self.doc = document
        self.floats = {}  # figure/table/section label -> number

    def number_floats(self):
        counts = {"fig": 0, "tab": 0}
        for k, section in enumerate(self.doc.sections, 1):
            self.floats[section.label] = k
            for block in section.blocks:
                if isinstance(block, (Figure, Table)) and block.label:
                    kind = block.label.split(":")[0]
                    counts[kind] += 1
                    self.floats[block.label] = counts[kind]

    def inline(self, parts) -> str:
        out = []
        for part in parts:
            if isinstance(part, Math):  # Markdown reads \\ as an escaped backslash: a row break needs four
                out.append("$" + part.tex.replace("\\\\", "\\\\\\\\") + "$")
            elif isinstance(part, Code):
                out.append(f"`{part.text}`")
            elif isinstance(part, Ref):
                if part.label.startswith("eq:"):
                    out.append(f"({self.doc.numbers[part.label]})")
                else:
                    out.append(str(self.floats[part.label]))
            else:
                out.append(escape(part))
        return "".join(out)

    def display(self, display: Display) -> str:
        if len(display.rows) > 1 and all(row.number is None and row.tag is None for row in display.rows):
            lines = []
            for row in display.rows:  # unnumbered rows: one aligned block
                lines.append(f"{row.lhs} &{row.relation} {row.lines[0]}")
                lines += [f"&\\quad {{}}{line}" for line in row.lines[1:]]
            return display_block("\\begin{aligned}\n" + " \\\\\n".join(lines) + "\n\\end{aligned}")
        blocks = []
        for row in display.rows:
            number = row.number if row.number is not None else row.tag
            tag = f" \\tag{{{number}}}" if number is not None else ""
            if len(row.lines) == 1:
                blocks.append(display_block(f"{row.lhs} {row.relation} {row.lines[0]}{tag}"))
            else:
                body = " \\\\\n&\\quad {}".join(row.lines)
                blocks.append(display_block(f"\\begin{{aligned}}\n{row.lhs} &{row.relation} {body}\n\\end{{aligned}}{tag}"))
        return "\n\n".join(blocks)

    def table(self, table: Table) -> str:
        lines = []
        if table.caption:
            lines += [f"*Table {self.floats[table.label]}: {self.inline(table.caption)}*", ""]
        align = {"l": ":--", "r": "--:"}
        lines.append("| " + " | ".join(self.inline(h) for h in table.header) + " |")
        lines.append("|" + "|".join(align.get(c, ":--") for c in table.columns) + "|")
        lines += ["| " + " | ".join(self.inline(cell) for cell in row) + " |" for row in table.rows]
        return "\n".join(lines)

    def figure(self, figure: Figure) -> str:
        return (f"```mermaid\n{figure.mermaid}\n```\n\n"
                f"*Figure {self.floats[figure.label]}: {self.inline(figure.mermaid_caption or figure.caption)}*")

    def block(self, block) -> str:
        if isinstance(block, Paragraph):
            return self.inline(block.parts)
        if isinstance(block, Display):
            return self.display(block)
        if isinstance(block, Table):
            return self.table(block)
        if isinstance(block, Figure):
            return self.figure(block)
        if isinstance(block, Boxed):
            return "\n\n".join(display_block(group) for group in block.tex())
        raise TypeError(f"no Markdown rendering for {type(block).__name__}")

    def render(self) -> str:
        self.number_floats()
        out = [f"# {escape(self.doc.title)}", "", f"*{self.inline(self.doc.subtitle)}*", "",
               "*Generated by symrnn.*"]
        for k, section in enumerate(self.doc.sections, 1):
            out += ["", f"## {k}. {escape(section.title)}"]
            for block in section.blocks:
                if isinstance(block, Paragraph) and not block.parts:
                    continue
                out += ["", self.block(block)]
        return "\n".join(out) + "\n"


def render(document) -> str:
    """The Markdown text of ``document``."""
    return MarkdownRenderer(document).render()
