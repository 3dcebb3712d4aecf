"""Every Markdown report avoids the constructs GitHub's math renderer is known to mishandle.

GitHub renders ``$...$`` and ``$$...$$`` with MathJax after its Markdown pass, so Markdown gets the
math first: it eats the backslash of ``\\{`` and ``\\}`` (the braces vanish), may take ``*`` for
emphasis and ``<x`` for an HTML tag, ends a table cell at ``|``, leaves ``$ x$`` (a space inside a
delimiter) as text, and turns ``\\\\`` into ``\\`` in inline math.  Display math is the safe
place for line breaks.
"""
import re
from pathlib import Path

import pytest

DERIVATIONS = Path(__file__).resolve().parents[1] / "derivations"
INLINE = re.compile(r"(?<![\\$])\$(?!\$)(.+?)(?<![\\$])\$(?!\$)")

RULES = {
    "escaped brace (Markdown eats the backslash: use \\lbrace, \\rbrace)": re.compile(r"\\[{}]"),
    "asterisk (emphasis in Markdown: use \\ast or \\cdot)": re.compile(r"\*"),
    "'<' before a letter (an HTML tag to Markdown: use \\lt)": re.compile(r"<[A-Za-z/!]"),
    "double backslash in inline math (Markdown makes it one: write four)": re.compile(r"(?<!\\)\\{2,3}(?!\\)"),
}


def inline_math(text):
    """``(line number, formula, in a table row)`` of each inline formula outside display blocks."""
    in_display = False
    for number, line in enumerate(text.splitlines(), 1):
        if line.strip() == "$$":
            in_display = not in_display
            continue
        if in_display or line.startswith("```") or line.startswith("    "):
            continue
        for match in INLINE.finditer(line):
            yield number, match.group(1), line.startswith("|")


def problems(text):
    out = []
    for number, formula, in_table in inline_math(text):
        if formula != formula.strip():
            out.append((number, formula, "space inside a delimiter (not rendered)"))
        for what, pattern in RULES.items():
            if pattern.search(formula):
                out.append((number, formula, what))
        if in_table and "|" in formula:
            out.append((number, formula, "'|' in a table cell (ends the cell: use \\vert)"))
    return out


def test_the_scanner_finds_each_construct():
    sample = "a $t \\in \\{1\\}$ b $a * b$ c $a<b$ d $ x$ e $a \\\\ b$\n| $\\|x\\|$ | y |\n"
    found = {what for _, _, what in problems(sample)}
    assert len(found) == 6, found


@pytest.mark.parametrize("path", sorted(DERIVATIONS.glob("*.md")), ids=lambda p: p.name)
def test_reports_avoid_constructs_github_mishandles(path):
    assert problems(path.read_text()) == []


# -- display maths ------------------------------------------------------------------------------------
def display_blocks(text):
    """``(line number, body)`` of each ``$$ ... $$`` block (the delimiters on lines of their own)."""
    lines, start = text.splitlines(), None
    for number, line in enumerate(lines, 1):
        if line.strip() == "$$":
            if start is None:
                start = number
            else:
                yield start, "\n".join(lines[start:number - 1])
                start = None


def display_problems(body):
    """GitHub's Markdown pass reads a backslash before ASCII punctuation as an escape inside ``$$`` too, so a
    row break must be written with four backslashes and ``\\,`` with two.  Flagged: one backslash before
    punctuation (eaten), two before a space or the end of a line (the single row break that collapses a
    matrix to one row), three (never meant)."""
    out = []
    for match in re.finditer(r"(?<!\\)(\\+)(.|$)", body, re.M):
        run, after = len(match.group(1)), match.group(2)
        punct = bool(re.fullmatch(r"[!-/:-@\[-`{-~]", after))
        if (run == 1 and punct) or (run == 2 and (after == "" or after.isspace())) or run == 3:
            out.append(match.group(0))
    return out


def test_the_display_scanner_finds_a_single_row_break():
    assert display_problems(r"a \\ b") and display_problems(r"a \, b") and not display_problems(r"a \\\\ b \\, c")
    assert not display_problems(r"\alpha \bar{x}_{t} \big|_{1}")


@pytest.mark.parametrize("path", sorted(DERIVATIONS.glob("*.md")), ids=lambda p: p.name)
def test_display_maths_survives_githubs_markdown_pass(path):
    bad = [(number, found) for number, body in display_blocks(path.read_text()) for found in display_problems(body)]
    assert bad == [], f"{path.name}: single backslash escapes inside $$ (line, text): {bad[:5]}"


def test_the_renderer_writes_github_display_maths():
    import symrnn as sr
    from symrnn.report import markdown_document

    text = markdown_document(sr.Model("gru", D=2, H=2, K=2))
    blocks = list(display_blocks(text))
    assert blocks and all(display_problems(body) == [] for _, body in blocks)
    assert any("\\\\\\\\" in body for _, body in blocks)  # the row breaks are there, written four times
