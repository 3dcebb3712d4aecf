"""The LaTeX rendering of a report: a self-contained article that pdflatex compiles.

Only packages of texlive-latex-base, -latex-recommended and -pictures are used
(amsmath, amssymb, array, booktabs, float, geometry, graphicx, hyperref, longtable,
tikz with the ``positioning`` and ``arrows.meta`` libraries).  Long equations arrive already
broken into lines (:func:`symrnn.report.latex.break_lines`) and are set with
``split`` (one numbered equation) or ``align`` (several).

Floats stay with their text: a figure is set where it stands (``[H]`` of the float
package: it moves to the next page whole, never into the middle of a later paragraph)
and a table is a ``longtable`` in the text, which breaks across pages with its header
repeated instead of waiting for a page of its own.
"""
from __future__ import annotations

from .blocks import Boxed, Code, Display, Figure, Math, Paragraph, Ref, Section, Table
from .latex import GREEK

PREAMBLE = r"""\documentclass[11pt,a4paper]{article}
\usepackage[margin=2.5cm]{geometry}
\usepackage{amsmath,amssymb}
\usepackage{array,booktabs,longtable}
\usepackage{float}
\usepackage{graphicx}
\usepackage{tikz}
\usetikzlibrary{positioning,arrows.meta}
\usepackage[hidelinks]{hyperref}
\allowdisplaybreaks
\setlength{\emergencystretch}{2em}
\makeatletter
\setlength{\@fptop}{0pt}
\setlength{\LTcapwidth}{\textwidth}
\makeatother
"""

_ESCAPES = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
            "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}


def escape(text: str) -> str:
    """``text`` safe in a LaTeX paragraph: special characters escaped, a Greek letter as math (a name ``λ``),
    any other character outside ASCII by its code point (pdflatex sets few of them)."""
    return "".join(_ESCAPES.get(ch, ch) if ch.isascii() else
                   f"${GREEK[ch]}$" if ch in GREEK else "U+%04X" % ord(ch) for ch in text)


def inline(parts) -> str:
    out = []
    for part in parts:
        if isinstance(part, Math):
            out.append(f"${part.tex}$")
        elif isinstance(part, Code):
            out.append(r"\texttt{%s}" % escape(part.text).replace(".", r".\allowbreak{}"))
        elif isinstance(part, Ref):
            out.append(r"\eqref{%s}" % part.label if part.label.startswith("eq:") else r"\ref{%s}" % part.label)
        else:
            out.append(escape(part))
    return "".join(out)


def render_display(display: Display) -> str:
    rows = display.rows
    numbered = any(r.label for r in rows)

    def tag(row):  # a number without a label: the answers of the exercise version
        return r" \tag{%s}" % row.tag if row.tag else ""

    if len(rows) == 1:
        row = rows[0]
        env = "equation" if numbered else "equation*"
        label = r"\label{%s}" % row.label if row.label else ""
        if len(row.lines) == 1:
            return f"\\begin{{{env}}}{label}\n  {row.lhs} {row.relation} {row.lines[0]}{tag(row)}\n\\end{{{env}}}"
        body = f" \\\\\n    &\\quad {{}}".join(row.lines)
        return (f"\\begin{{{env}}}{label}\n  \\begin{{split}}\n    {row.lhs} &{row.relation} {body}\n"
                f"  \\end{{split}}{tag(row)}\n\\end{{{env}}}")
    env = "align" if numbered else "align*"
    lines = []
    for row in rows:
        first = (r" \label{%s}" % row.label) if row.label else (r" \notag" if numbered else tag(row))
        rest = r" \notag" if numbered else ""
        lines.append(f"  {row.lhs} &{row.relation} {row.lines[0]}{first}")
        lines += [f"  &\\quad {{}}{line}{rest}" for line in row.lines[1:]]
    return f"\\begin{{{env}}}\n" + " \\\\\n".join(lines) + f"\n\\end{{{env}}}"


def render_table(table: Table) -> str:
    """A ``longtable``: set in the text where it stands, broken across pages if it must be (the header
    repeats; no page holds only its first or last row)."""
    spec = "@{}" + "".join(table.columns) + "@{}"
    header = [r"\toprule", " & ".join(inline(h) for h in table.header) + r" \\", r"\midrule"]
    lines = [r"\begin{longtable}{%s}" % spec]
    if table.caption:
        lines.append(r"\caption{%s}" % inline(table.caption) + (r"\label{%s}" % table.label if table.label else "")
                     + r"\\")
    lines += header + [r"\endfirsthead"]
    if table.caption:
        lines.append(r"\multicolumn{%d}{@{}l@{}}{\footnotesize Table~\thetable\ (continued)}\\" % len(table.columns))
    lines += header + [r"\endhead", r"\bottomrule", r"\endlastfoot"]
    rows = [" & ".join(inline(cell) for cell in row) for row in table.rows]
    for k, row in enumerate(rows):  # \\* forbids a break: two rows at least on either side of one
        keep = k < 1 or k >= len(rows) - 2
        lines.append(row + (r" \\*" if keep and k < len(rows) - 1 else r" \\"))
    lines.append(r"\end{longtable}")
    return "\n".join(lines)


def render_figure(figure: Figure) -> str:
    return "\n".join([r"\begin{figure}[H]", r"\centering", figure.tikz,
                      r"\caption{%s}\label{%s}" % (inline(figure.caption), figure.label), r"\end{figure}"])


def render_block(block) -> str:
    if isinstance(block, Paragraph):
        return inline(block.parts)
    if isinstance(block, Display):
        return render_display(block)
    if isinstance(block, Table):
        return render_table(block)
    if isinstance(block, Figure):
        return render_figure(block)
    if isinstance(block, Boxed):
        return "\n".join("\\[\n" + group + "\n\\]" for group in block.tex())
    raise TypeError(f"no LaTeX rendering for {type(block).__name__}")


def render_section(section: Section, level: str = "section") -> str:
    parts = [r"\%s{%s}\label{%s}" % (level, escape(section.title), section.label)]
    parts += [render_block(b) for b in section.blocks if not (isinstance(b, Paragraph) and not b.parts)]
    parts += [render_section(s, "subsection") for s in section.subsections]
    return "\n\n".join(parts)


def render(document) -> str:
    """The complete ``.tex`` source of ``document``."""
    head = [PREAMBLE.rstrip("\n"),
            r"\title{%s\\[0.4em]\large %s}" % (escape(document.title), inline(document.subtitle)),
            r"\author{Generated by symrnn}", r"\date{}", "", r"\begin{document}", r"\maketitle", ""]
    body = "\n\n".join(render_section(s) for s in document.sections)
    return "\n".join(head) + body + "\n\n\\end{document}\n"
