"""A verification as HTML, for notebooks and the documentation: the verdict first, tables with spaced
columns, and no temporary file paths (the smallest failing case is named by its sizes; its file and
replay command stay in :attr:`Verification.minimal`)."""
from __future__ import annotations

import html

CELL = "padding: 0.2em 1.2em 0.2em 0; text-align: {}; border-bottom: 1px solid #ddd"


def _table(header, rows, align):
    def row(tag, cells):
        return "<tr>" + "".join(f'<{tag} style="{CELL.format(a)}">{html.escape(str(c))}</{tag}>'
                                for c, a in zip(cells, align)) + "</tr>"
    return ('<table style="border-collapse: collapse; margin: 0.4em 0 0.8em 0">' + row("th", header)
            + "".join(row("td", r) for r in rows) + "</table>")


def verification_html(result) -> str:
    """The HTML of a :class:`~symrnn.verify.Verification` (what a notebook shows for it)."""
    parts = [f'<p style="font-weight: bold">{html.escape(result.verdict())}</p>',
             f"<p>{html.escape(result.summary())}</p>"]
    if result.gradients:
        rows = []
        for g in result.gradients:
            wrong = ", ".join(b.block for b in g.blocks if not b.ok)
            rows.append([g.name, f"{g.user_norm:.4e}", f"{g.exact_norm:.4e}", f"{g.worst_error:.3e}",
                         f"{g.tolerance:.3e}", "ok" if g.ok else "WRONG", wrong])
        parts.append(f"<p>Gradients in the case {html.escape(result.case)!r} (error and tolerance at each "
                     f"gradient's worst entry, the largest error/tolerance):</p>")
        parts.append(_table(["gradient", "‖user‖", "‖exact‖", "error", "tolerance", "verdict",
                             "wrong gate blocks"], rows, ["left", "right", "right", "right", "right", "left", "left"]))
    loc = result.localisation
    if loc.get("message"):
        parts.append(f"<p>Where: {html.escape(loc['message'])}.</p>")
    if result.fingerprint is not None:
        line = f" It differs from the exact line {result.exact_line['equation']}." if result.exact_line else ""
        parts.append(f"<p>Catalogued mistake <code>{html.escape(result.fingerprint.name)}</code>: "
                     f"{html.escape(result.fingerprint.description)}.{html.escape(line)}</p>")
    if result.minimal:
        m = result.minimal
        parts.append(f"<p>Smallest failing case: T={m['T']}, N={m['N']}, D={m['D']}, H={m['H']} (saved; "
                     f"<code>result.minimal['command']</code> replays it).</p>")
    parts.append(_table(["case", "T", "N", "verdict", "wrong gradients"],
                        [[c.label, c.T, c.N, "ok" if c.ok else "WRONG", ", ".join(c.wrong)] for c in result.cases],
                        ["left", "right", "right", "left", "left"]))
    parts.append(f"<p>Forward: {'ok' if result.forward.ok else 'DIFFERS'} ({html.escape(result.forward.message)}); "
                 f"error model: {html.escape(result.dtype_model.name)}.</p>")
    for title, items in (("Hygiene", result.hygiene), ("Notes", result.notes)):
        if items:
            parts.append(f"<p>{title}:</p><ul>" + "".join(f"<li>{html.escape(str(x))}</li>" for x in items) + "</ul>")
    return "\n".join(parts)
