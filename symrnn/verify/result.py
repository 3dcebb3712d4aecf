"""The result of a verification: one summary line first, details after; ``to_json`` for machines."""
from __future__ import annotations

import json
from dataclasses import dataclass, field

import numpy as np


@dataclass
class ForwardCheck:
    ok: bool
    message: str
    quantity: str = ""
    step: int | None = None  # from 1, as in the derivations
    max_abs_error: float = 0.0
    chaotic: int | None = None  # the step (from 1) from which rounding has moved the states apart

    def to_json(self):
        return {"ok": self.ok, "message": self.message, "quantity": self.quantity, "step": self.step,
                "max_abs_error": self.max_abs_error, "chaotic": self.chaotic}


@dataclass
class CaseResult:
    label: str
    T: int
    N: int
    ok: bool
    wrong: list = field(default_factory=list)  # names of the wrong gradients
    judged: bool = True  # False: a chaotic forward, its gradients not judged (see the notes)

    def to_json(self):
        return {"label": self.label, "T": self.T, "N": self.N, "ok": self.ok, "wrong": self.wrong,
                "judged": self.judged}


@dataclass
class Verification:
    """What :func:`symrnn.verify.verify_layer` and friends return.

    ``ok`` is true when the forward matches the declared cell and every gradient
    of every case is within its tolerance; ``gradients`` is the per-gradient
    table of the shortest failing case (or of the main case when all pass).
    ``str()`` is the full report, :meth:`summary` its first line.

    Attributes
    ----------
    ok : bool
    mode, cell, layout : str
        What was verified.
    forward : ForwardCheck
        ``ok``, ``message``, the first differing ``step`` and ``quantity``.
    gradients : list of GradientVerdict
        ``name``, ``user_norm``, ``exact_norm``, ``max_abs_error``, ``tolerance``, ``ok``, the
        worst entry, and per-gate ``blocks``.
    cases : list of CaseResult
        Every case run: ``label``, ``T``, ``N``, ``ok``, ``wrong``.
    hygiene : list
        Inputs modified in place, nondeterminism, reused buffers.
    dtype_model : DtypeModel
        The error model (``float64`` or ``float32``) and why.
    case : str
        The case the gradient table is about.
    localisation : dict
        ``gradient``, ``block``, ``path``, ``step``, ``message``, ``shortest_failing_T``.
    fingerprint : Mutation or None
        The catalogued mistake the gradients match (``name``, ``description``).
    explanation : Clipping, Truncation, KinkConvention, Float32Rounding or None
        Undeclared clipping or truncation that explains the difference, or another convention at
        relu's kink (:mod:`symrnn.verify.kinks`), or float32 rounding in float64 code
        (:mod:`symrnn.verify.precision`).
    minimal : dict
        The smallest failing case: ``path``, ``T``, ``N``, ``D``, ``H``, ``command``.
    exact_line : dict
        The fingerprint's line of the exact derivation (equation, LaTeX, code).
    notes : list of str
        What the verification could not do.
    nondeterministic : list of dict
        The cases whose two calls on the same inputs were judged differently (``case``, ``names``,
        ``wrong_call``, each call's ``errors``): not ok, verdict ``NONDETERMINISTIC``.
    """

    ok: bool
    mode: str
    cell: str
    layout: str
    forward: ForwardCheck
    gradients: list
    cases: list
    hygiene: list
    dtype_model: object
    case: str = ""  # the case the table is about
    localisation: dict = field(default_factory=dict)  # gradient, block, path, step, message
    fingerprint: object = None  # a symrnn.verify.mutants.Mutation the gradients match
    explanation: object = None  # a Clipping or Truncation that turns the declared gradients into the user's
    minimal: dict = field(default_factory=dict)  # the smallest failing case: path, T, N, D, H, command
    exact_line: dict = field(default_factory=dict)  # the fingerprint's line of the exact derivation: latex, code
    notes: list = field(default_factory=list)  # what the verification could not do
    found: str = ""  # the cell and layout found from the forward (verify_layer(..., cell=None))
    searched: int = 0  # cases drawn by Hypothesis (search=) besides the fixed ones, none of them failing
    nondeterministic: list = field(default_factory=list)  # cases whose two calls on the same inputs were judged
    # differently: {"case", "names", "wrong_call" ("first"/"second"), "errors": {name: [(error, tolerance) per call]}}

    @property
    def wrong(self) -> list:
        """The gradient verdicts that failed."""
        return [g for g in self.gradients if not g.ok]

    def verdict(self) -> str:
        """The report's first line, at most 100 characters: RIGHT, WRONG (which gradients, the wrong part
        of a wired model, the named mistake, the first wrong step), NONDETERMINISTIC (right on one of two calls
        on the same inputs, wrong on the other), FORWARD DIFFERS or DIFFERS ONLY BY
        (undeclared clipping or truncation)."""
        what = f"{self.cell} {self.mode} code"
        if not self.forward.ok:
            at = f" at step {self.forward.step}" if self.forward.step else ""
            if self.forward.max_abs_error == float("inf"):
                return _fit(f"FORWARD DIFFERS: {what}'s forward is not finite "
                            f"({self.forward.quantity or 'output'}{at})")
            return _fit(f"FORWARD DIFFERS: {what} computes another function ({self.forward.quantity or 'output'}"
                        f"{at})")
        if self.ok:
            warn = f", {len(self.hygiene)} hygiene finding(s)" if self.hygiene else ""
            searched = f" + {self.searched} searched" if self.searched else ""
            chaotic = sum(not c.judged for c in self.cases)
            cases = f"{len(self.cases) - chaotic} cases" + (f", {chaotic} chaotic not judged" if chaotic else "")
            if getattr(self.dtype_model, "computed_in", ""):  # float64 arrays computed in float32
                return _fit(f"RIGHT TO {self.dtype_model.computed_in} ONLY: {what} computes in "
                            f"{self.dtype_model.computed_in}; {len(self.gradients)} gradients, {cases}{searched}{warn}")
            return _fit(f"RIGHT: {what}, {len(self.gradients)} gradients exact ({self.dtype_model.name} error model, "
                        f"{cases}{searched}{warn})")
        if self.nondeterministic:
            names = ", ".join(dict.fromkeys(n for r in self.nondeterministic for n in r["names"]))
            return _fit(f"NONDETERMINISTIC: {names} ({what}): two calls on the same inputs differ, one wrong")
        if _own(self.explanation):
            return _fit(f"DIFFERS ONLY {self.explanation.short()}")
        if self.explanation is not None:
            return _fit(f"DIFFERS ONLY BY {self.explanation.to_json()['text']}: declare "
                        f"{self.explanation.declaration()}")
        # the shown case's first, then those wrong in other cases: each name once
        names = list(dict.fromkeys([g.name for g in self.wrong] + [n for c in self.cases for n in c.wrong]))
        if not names:  # every gradient within tolerance, but a hygiene error (a saved tensor modified in place)
            return _fit(f"WRONG: {what}: gradients exact, but " + ", ".join(
                sorted({f.kind for f in self.hygiene if f.severity == "error"})))
        names = [n + " (not finite)" if any(g.name == n and not np.isfinite(g.max_abs_error) for g in self.gradients)
                 else n for n in names]
        loc = self.localisation
        where = [loc.get("part"), self.fingerprint.name if self.fingerprint is not None else None,
                 loc.get("block") and f"gate {loc['block']}", loc.get("step") and f"step {loc['step']}"]
        where = [w for w in where if w]
        where = f": {', '.join(where)}" if where else ""
        for k in range(len(names), 0, -1):
            shown = ", ".join(names[:k]) + (f" +{len(names) - k} more" if k < len(names) else "")
            text = f"WRONG: {shown} ({what}){where}"
            if len(text) <= 100:
                return text
        return _fit(text)

    def summary(self) -> str:
        """The report's explanation in one sentence: the verdict, the mistake, where, the smallest
        failing case (the line after the table)."""
        if not self.forward.ok:
            named = (f" -- looks like: {self.fingerprint.description} (catalogued mistake {self.fingerprint.name!r})"
                     if self.fingerprint is not None else "")
            return f"{self.cell} {self.mode} code computes a different function: {self.forward.message}{named}"
        if self.ok:
            n = sum(1 for _ in self.gradients)
            warn = f"; {len(self.hygiene)} hygiene finding(s)" if self.hygiene else ""
            inside = getattr(self.dtype_model, "computed_in", "")
            if inside:
                return (f"{self.cell} {self.mode} code is right to {inside} precision only: it returns float64 arrays "
                        f"but computes them in {inside} (its forward agrees with the exact one only as {inside} "
                        f"rounding does), so it is judged as {inside} code: {n} gradients exact to the {inside} error "
                        f"model in {len(self.cases)} cases{warn}; a float64 function computed in {inside} is not "
                        f"exact to float64: compute in float64 for float64 accuracy")
            return (f"{self.cell} {self.mode} code is right: {n} gradients exact to the {self.dtype_model.name} "
                    f"error model in {len(self.cases)} cases{warn}")
        if self.nondeterministic:
            return _nondeterministic_sentence(self)
        names = ", ".join(g.name for g in self.wrong)
        if any(g.not_finite for g in self.wrong):
            return self._not_finite_summary()
        errors = [f.message for f in self.hygiene if f.severity == "error"]
        if not names and errors:
            return f"{self.cell} {self.mode} code is wrong: {errors[0]}"
        if _own(self.explanation):
            return f"{self.cell} {self.mode} code: {self.explanation.sentence()} ({names} differ)"
        if self.explanation is not None:
            what = self.explanation.to_json()["text"]
            return (f"{self.cell} {self.mode} code differs from the declared gradients only by {what}: not a "
                    f"backprop mistake if intended; declare {self.explanation.declaration()} to verify it exactly "
                    f"({names} differ)")
        blocks = []
        for g in self.wrong:
            bad = [b.block for b in g.blocks if not b.ok]
            good = [b.block for b in g.blocks if b.ok and b.tested]
            if bad and good:
                blocks.append(f"{g.name}: gate block(s) {', '.join(bad)} wrong, {', '.join(good)} right")
        where = f" ({'; '.join(blocks)})" if blocks else ""
        failing = [c.label for c in self.cases if not c.ok]
        named = (f": {self.fingerprint.description} (catalogued mistake {self.fingerprint.name!r}). Wrong:"
                 if self.fingerprint is not None else ":")
        message = f"; {self.localisation['message']}" if self.localisation.get("message") else ""
        smallest = (f"; smallest failing case T={self.minimal['T']}, N={self.minimal['N']}, D={self.minimal['D']}, "
                    f"H={self.minimal['H']}" if self.minimal else "")
        shown = {g.name for g in self.wrong}
        elsewhere = {}
        for c in self.cases:
            for name in c.wrong:
                if name not in shown:
                    elsewhere.setdefault(name, []).append(c.label)
        also = ("; also wrong in other cases: " + ", ".join(
            f"{name} ({len(labels)} of {len(self.cases)})" for name, labels in elsewhere.items())) if elsewhere else ""
        return (f"{self.cell} {self.mode} code is wrong{named} {names}{where}{message}, shown in the case "
                f"{self.case!r} (wrong in {len(failing)} of {len(self.cases)} cases){also}{smallest}")

    def _not_finite_summary(self) -> str:
        """The summary when the user's gradients hold NaN or inf: which, how many entries, the first."""
        bad = [g for g in self.wrong if g.not_finite]
        listed = ", ".join(f"{g.name} ({not_finite_text(g)})" for g in bad)
        rest = [g.name for g in self.wrong if not g.not_finite]
        also = f"; also wrong (finite): {', '.join(rest)}" if rest else ""
        failing = sum(not c.ok for c in self.cases)
        smallest = (f"; smallest failing case T={self.minimal['T']}, N={self.minimal['N']}, D={self.minimal['D']}, "
                    f"H={self.minimal['H']}" if self.minimal else "")
        return (f"{self.cell} {self.mode} code is wrong: the gradients it returns are not finite where the exact "
                f"ones are: {listed}{also}; look for a division by a quantity that can be 0 (a norm of a zero "
                f"gradient), the log or sqrt of a negative number or an overflow in the backward; shown in the "
                f"case {self.case!r} (wrong in {failing} of {len(self.cases)} cases){smallest}")

    def __str__(self):
        return self.report()

    def _repr_html_(self):
        """In a notebook: the verdict first, styled tables, no temporary paths (:mod:`symrnn.verify.html`)."""
        from .html import verification_html

        return verification_html(self)

    def report(self, show_code=False) -> str:
        """The full report (``str()``); ``show_code`` adds the generated-code lines of a named mistake."""
        lines = [self.verdict()]
        if self.gradients:
            lines += ["", f"gradients in the case {self.case!r} (error and tolerance at each gradient's worst entry, "
                          f"the largest error/tolerance):",
                      f"  {'name':<10} {'|user|':>11} {'|exact|':>11} {'error':>11} {'tolerance':>11}  verdict"]
            for g in self.gradients:
                lines.append(f"  {g.name:<10} {g.user_norm:11.4e} {g.exact_norm:11.4e} {g.worst_error:11.3e} "
                             f"{g.tolerance:11.3e}  {'ok' if g.ok else 'WRONG'}")
                if not g.ok:
                    largest = (f"; largest error {g.max_abs_error:.3e} elsewhere"
                               if g.max_abs_error > g.worst_error else "")
                    bad = f" ({not_finite_text(g)})" if g.not_finite else ""
                    lines.append(f"  {'':<10} worst entry {g.name}{list(g.worst_index)}: user {g.user_value:.10g}, "
                                 f"exact {g.exact_value:.10g}{largest}{bad}")
                    for b in g.blocks:
                        lines.append(f"  {'':<10} gate block {b.block}: max error {b.max_abs_error:.3e} "
                                     f"{('ok' if b.tested else 'ok (not tested: zero here)') if b.ok else 'WRONG'}")
        lines += ["", self.summary()] + ([f"found: {self.found}"] if self.found else []) + ["",
                  f"forward: {'ok' if self.forward.ok else 'DIFFERS'} ({self.forward.message})",
                  f"error model: {self.dtype_model.name} ({self.dtype_model.reason})"]
        loc = self.localisation
        where = ", ".join(f"{k} {loc[k]}" for k in ("gradient", "block", "path", "step") if loc.get(k) is not None)
        if where or loc.get("message"):
            lines += ["", "localisation: " + where]
            if loc.get("message"):
                lines.append(f"  {loc['message']}")
        if self.explanation is not None and not _own(self.explanation):
            lines += ["", f"explained by {self.explanation.to_json()['text']}; declare "
                          f"{self.explanation.declaration()} to verify it exactly"]
        if self.fingerprint is not None:
            lines += ["", f"fingerprint: {self.fingerprint.name} -- {self.fingerprint.description}",
                      f"  it changes {self.fingerprint.changes} of the exact derivation"
                      + (f" (in {self.fingerprint.where})" if self.fingerprint.where else "")]
            if self.exact_line:
                lines += [f"  the exact line it differs from: {self.exact_line['equation']}",
                          f"  in LaTeX: {self.exact_line['latex']}"]
                if show_code:
                    lines += [f"  in symrnn's generated backward: {c}" for c in self.exact_line["code"]]
        if self.minimal:
            m = self.minimal
            lines += ["", f"smallest failing case: T={m['T']}, N={m['N']}, D={m['D']}, H={m['H']}, saved in {m['path']}",
                      f"replay: {m['command']}"]
        lines += ["", "cases:"] + [f"  {'chaos' if not c.judged else 'ok   ' if c.ok else 'WRONG'} {c.label} (T={c.T}, N={c.N})"
                                   + (f": {', '.join(c.wrong)}" if c.wrong else "") for c in self.cases]
        if self.hygiene:
            lines += ["", "hygiene:"] + [f"  {f}" for f in self.hygiene]
        if self.notes:
            lines += ["", "notes:"] + [f"  {n}" for n in self.notes]
        return "\n".join(lines)

    def to_json(self, path=None) -> dict:
        """The result as a JSON-ready dict, also written to ``path`` when given.

        Keys: ``ok``, ``verdict``, ``summary``, ``mode``, ``cell``, ``layout``, ``forward``, ``case``,
        ``gradients``, ``cases``, ``hygiene``, ``dtype_model``, ``localisation``,
        ``fingerprint``, ``minimal_case``, ``notes``, ``explanation``, ``nondeterministic``.
        """
        data = {"ok": self.ok, "verdict": self.verdict(), "summary": self.summary(), "mode": self.mode, "cell": self.cell,
                "layout": self.layout, "forward": self.forward.to_json(), "case": self.case,
                "gradients": [g.to_json() for g in self.gradients],
                "cases": [c.to_json() for c in self.cases],
                "hygiene": [f.to_json() for f in self.hygiene],
                "dtype_model": {"name": self.dtype_model.name, "reason": self.dtype_model.reason},
                "localisation": dict(self.localisation),
                "fingerprint": None if self.fingerprint is None else {
                    "name": self.fingerprint.name, "description": self.fingerprint.description,
                    "changes": self.fingerprint.changes, "where": self.fingerprint.where,
                    "exact_line": dict(self.exact_line) or None},
                "minimal_case": dict(self.minimal) or None, "notes": list(self.notes), "found": self.found or None,
                "nondeterministic": list(self.nondeterministic),
                "explanation": None if self.explanation is None else self.explanation.to_json()}
        if path is not None:
            from ..fileio import write_text_atomic

            write_text_atomic(path, json.dumps(data, indent=2, default=float) + "\n")
        return data


def not_finite_text(g) -> str:
    """``NaN in 20 of 20 entries, first at dWx[0, 0]`` for a gradient verdict with entries not finite."""
    kind = "NaN" if np.isnan(g.user_norm) else "inf"
    return f"{kind} in {g.not_finite} of {g.size} entries, first at {g.name}{list(g.first_not_finite)}"


def _nondeterministic_sentence(result) -> str:
    """What the report says of a backward judged otherwise on two calls on the same inputs."""
    first = next((r for r in result.nondeterministic if r["case"] == result.case), result.nondeterministic[0])
    names = ", ".join(first["names"])

    def said(errors):
        return "exact" if errors is None or errors[0] <= errors[1] else \
            f"off by {errors[0]:.3e} (tolerance {errors[1]:.3e})"
    calls = "; ".join(f"{n}: the first call's {said(e[0])}, the second's {said(e[1])}"
                      for n, e in first["errors"].items())
    return (f"{result.cell} {result.mode} code is nondeterministic: two calls on the same inputs returned different "
            f"{names}, one of them wrong ({calls}, in the case {first['case']!r}; judged apart in "
            f"{len(result.nondeterministic)} of {len(result.cases)} cases): state kept between calls (a counter, a "
            f"global, a cache or buffer written by an earlier call, random numbers) changes the gradients; a backward "
            f"must return the same gradients for the same inputs. The table shows the wrong call")


def _own(explanation) -> bool:
    """Whether the explanation is one with its own verdict and sentence and nothing to declare (another
    convention at relu's kink, float32 rounding), not a clipping or truncation to declare."""
    return explanation is not None and hasattr(explanation, "sentence")


def _fit(text, width=100):
    return text if len(text) <= width else text[:width - 3] + "..."
