"""The notation of a sequence-to-sequence report, and its equations by part.

One convention, stated in the report's notation table (:data:`CONVENTION`):

* encoder states carry a superscript: ``h^{enc}_s`` at source position ``s`` (the encoder's own recurrence
  is printed with ``s`` as its step); the decoder's states are plain, ``h_t`` at target step ``t``;
* a bar is an adjoint and nothing else (``\\bar h_t = dL/dh_t``), as in the single-cell reports; one
  contribution to an adjoint is written ``\\bar h_t |_{attention}``;
* in a sum over source positions (target steps) the summed index is ``s'`` (``t'``), so it never reads as
  the free index of the left side;
* the encoder's summary read by the bridge is ``z^{enc}`` (not the GRU's update gate ``z_t``), the decoder's
  initial state ``h_0``, the attention's query projection ``q_t`` (not the GRU's reset gate ``r_t``), the
  logits ``o_t``, the context ``c_t`` and Luong's attentional state ``\\tilde h_t``.
"""
from __future__ import annotations

import re

import sympy as sp

from ..engine.symbols import MatTVec, MatVec, Outer, Param
from .latex import ReportLatexPrinter

_INDEXED = re.compile(r"^(bar )?([A-Za-z_]\w*)\[(.+)\]$")
ENC = r"h^{\mathrm{enc}}"

#: ``(symbol, meaning)`` rows of the notation table; ``$...$`` in a meaning is maths.
CONVENTION = [
    (r"h^{\mathrm{enc}}_{s}", r"encoder (top layer) state at source position $s$; its own recurrence is printed "
                               r"with $s$ as the step"),
    (r"h_{t}", r"decoder state at target step $t$ (a plain $h$ is always the decoder's)"),
    (r"\bar{u}", r"the adjoint $\partial L / \partial u$ of any quantity $u$ (a bar marks adjoints only)"),
    (r"\bar{u}\big\vert_{\text{attention}}", r"one contribution to $\bar{u}$: the part that arrives through the "
                                         r"attention (likewise readout, combination)"),
    (r"s,\ s'", r"source positions: $s$ free, $s'$ summed"),
    (r"t,\ t'", r"target steps: $t$ free, $t'$ summed"),
    (r"z^{\mathrm{enc}}", r"the encoder's summary (its final state) read by the bridge; not the update gate $z_{t}$"),
    (r"h_{0}", r"the decoder's initial state"),
    (r"a_{t,s},\ c_{t}", r"attention weight of position $s$ at step $t$; the context vector"),
    (r"\tilde{h}_{t}", r"Luong's attentional state, read by the readout"),
    (r"o_{t},\ \hat{y}_{t},\ b_{o}", r"logits, softmax probabilities and bias of the readout"),
    (r"g_{t},\ g_{s}", r"what reaches a decoder (encoder) state from outside its own recurrence"),
]


def parts(text):
    """``text`` with ``$...$`` as :class:`~symrnn.report.blocks.Math` parts (for a paragraph or a table cell)."""
    from .blocks import Math

    pieces = text.split("$")
    return [Math(p) if k % 2 else p for k, p in enumerate(pieces) if p]


# base name -> LaTeX, in any block (None: the printer's default)
_NAMES = {"hbar": ENC, "htilde": r"\tilde{h}", "ctx": "c", "logit": "o", "emb_tgt": r"\mathrm{emb}",
          "yhat": r"\hat{y}"}
_BLOCK_NAMES = {"enc": {"h": ENC}, "attn": {"r": "q"}, "bridge": {"z": r"z^{\mathrm{enc}}"}}


class Seq2SeqPrinter(ReportLatexPrinter):
    """The report printer with the convention above; ``block`` (``enc``, ``dec``, ``attn``, ``bridge``,
    ``combine``, ``readout``) says whose equations are printed, ``summed`` which indices a sum binds."""

    _default_settings = {**ReportLatexPrinter._default_settings, "block": "dec", "summed": ()}

    def _base_tex(self, base):
        block = self._settings["block"]
        own = _BLOCK_NAMES.get(block, {})
        if base in own:
            return own[base]
        return _NAMES.get(base) or self.name_tex(base)

    def _index_tex(self, index):
        block = self._settings["block"]
        if block == "enc":
            index = re.sub(r"\bt\b", "s", index)
        for summed in self._settings["summed"]:
            index = re.sub(rf"\b{summed}\b", summed + "'", index)
        return index.replace(",", ",")

    def _print_Symbol(self, expr, style="plain"):
        name = self._settings["symbol_names"].get(expr)
        if name is not None:
            return name
        match = _INDEXED.match(expr.name)
        bar = expr.name.startswith("bar ")
        if match is None:
            base = expr.name[4:] if bar else expr.name
            if base == "z":  # the encoder's summary, read by the bridge, the context and the readout
                return _barred(r"z^{\mathrm{enc}}") if bar else r"z^{\mathrm{enc}}"
            if isinstance(expr, Param) or bar:
                tex = self._base_tex(base)
                return _barred(tex) if bar else tex
            return super()._print_Symbol(expr, style)
        _, base, index = match.groups()
        block = self._settings["block"]
        if block == "bridge" and base == "z":
            return _barred(r"z^{\mathrm{enc}}") if bar else r"z^{\mathrm{enc}}"
        if base == "h_init":
            return r"\bar{h}_{0}" if bar else r"h_{0}"
        if block == "combine" and base == "z":
            return (r"\left[\bar{c}_{t}; \bar{h}_{t}\big|_{\text{combination}}\right]" if bar
                    else r"\left[c_{t}; h_{t}\right]")
        tex = self._base_tex(base)
        tex = _barred(tex) if bar else tex
        return _subscript(tex, self._index_tex(index))

    # a superscripted symbol gets braces before another superscript (h^{enc}_s transposed, squared)
    def _sup(self, expr):
        tex = self._print(expr)
        return "{%s}" % tex if isinstance(expr, sp.Symbol) and "^" in tex else self._operand(expr)

    def _print_Outer(self, expr, exp=None):
        q, v = expr.args
        return f"{self._operand(q)} {self._sup(v)}^{{\\top}}"

    def _print_dot(self, expr, exp=None):
        u, v = expr.args
        return r"%s^{\top} %s" % (self._sup(u), self._print(v))

    def _print_Pow(self, expr):
        base, e = expr.args
        if isinstance(base, sp.Symbol) and "^" in self._print(base) and e.is_Integer:
            return "{%s}^{%s}" % (self._print(base), self._print(e))
        return super()._print_Pow(expr)

    def _print_softmax_s(self, expr, exp=None):
        return r"\operatorname{softmax}_{s}\left(%s\right)" % self._print(expr.args[0])

    def _summed_over(self, index, args):
        """Print ``args`` with ``index`` bound by the sum (printed primed)."""
        before = self._settings["summed"]
        self._settings["summed"] = tuple(before) + (index,)
        try:
            return [_grouped(self, a) for a in args]
        finally:
            self._settings["summed"] = before

    def _print_sum_s(self, expr, exp=None):
        return r"\sum_{s'} %s" % r"\, ".join(self._summed_over("s", expr.args))

    def _print_sum_t(self, expr, exp=None):
        return r"\sum_{t'} %s" % self._summed_over("t", expr.args)[0]


def _grouped(printer, expr):
    tex = printer._print(expr)
    return r"\left(%s\right)" % tex if isinstance(expr, sp.Add) else tex


def _barred(tex):
    """``\\bar`` over the letter only: ``h^{enc}`` -> ``\\bar{h}^{enc}``, ``\\tilde{h}`` -> ``\\bar{\\tilde{h}}``."""
    if tex.startswith("\\tilde") or tex.startswith("\\hat"):
        return r"\bar{%s}" % tex
    head, sep, tail = tex.partition("^")
    head, sub, subtail = head.partition("_")
    return r"\bar{%s}" % head + (sub + subtail if sub else "") + (sep + tail if sep else "")


def _subscript(tex, index):
    if "_{" in tex:  # W_{a} with an index: W_{a,t}
        return tex[:-1] + "," + index + "}"
    return "%s_{%s}" % (tex, index)


def printer(block="dec", **settings) -> Seq2SeqPrinter:
    return Seq2SeqPrinter({"block": block, **settings})


CONTRIBUTION = r"\big|_{\text{%s}}"
DL = r"\frac{\partial L}{\partial %s}"


def attention_lhs(lhs, p):
    """The left side of an attention adjoint: a parameter's gradient, or a contribution to a state's adjoint."""
    name = lhs.name[4:]
    match = _INDEXED.match(name)
    if match is None:
        return DL % p.doprint(Param(name))
    base = match.group(2)
    if base in ("h", "hbar"):
        return p.doprint(lhs) + CONTRIBUTION % "attention"
    return p.doprint(lhs)


def readout_equations(model, p):
    """``(forward rows, adjoint rows)`` of the readout and the loss, from the model's loss rule: the
    logits read the pieces of ``model.readout_pieces``; ``p`` prints the left sides."""
    from ..engine.sequence_rules import sum_t

    rule = model.loss_rule.symbolic("logit", model.reduction)
    pieces = [name for name, _ in model.readout_pieces]
    one = len(pieces) == 1
    weights = {name: Param("V" if one else f"V_{'c' if name == 'ctx' else name}") for name in pieces}
    read = {name: sp.Symbol(name if name == "z" else f"{name}[t]") for name in pieces}
    logit = sp.Add(*[MatVec(weights[n], read[n]) for n in pieces], Param("b_o"))
    forward = [(sp.Symbol("logit[t]"), logit), (rule["readout"].lhs, rule["readout"].rhs),
               ("L_t", rule["per_step"])]
    obar = rule["gradient"].lhs
    adjoints = [(obar, rule["gradient"].rhs)]
    for n in pieces:
        target = sp.Symbol(f"bar {n}" if n == "z" else f"bar {n}[t]")
        left = p.doprint(target) + ("" if n == "htilde" else CONTRIBUTION % "readout")
        adjoints.append((left, MatTVec(weights[n], obar)))
    for n in pieces:
        adjoints.append((DL % p.doprint(weights[n]), sum_t(Outer(obar, read[n]))))
    adjoints.append((DL % "b_{o}", sum_t(obar)))
    return forward, adjoints


def _once(gradient):
    return gradient.function if isinstance(gradient, sp.Sum) else gradient


def _cell_rows(derivation, which):
    if which == "forward":
        return [(e.lhs, e.rhs) for e in derivation.forward]
    return [(a.lhs, a.rhs) for a in derivation.adjoints]


def _stateless_part(block, name, forward, input_bar, gradient, sort):
    """The rows of a stateless block (the bridge, the attentional combine): its equations, or the adjoint of
    its input and each parameter's ``gradient(...)`` (by name with ``sort``, else in the block's order)."""
    p = printer(name)
    if block is None:
        return [], p
    if forward:
        return _cell_rows(block, "forward"), p
    rows = [(p.doprint(sp.Symbol(input_bar)), block.input_gradient)]
    return rows + [(DL % p.doprint(Param(n)), gradient(block.gradients[n]))
                   for n in (sorted(block.gradients, key=str) if sort else block.gradients)], p


def seq2seq_part(d, part):
    """``(rows, printer)`` of one part of a :class:`~symrnn.models.seq2seq_derivation.Seq2SeqDerivation`
    (see :data:`symrnn.report.display.SEQ2SEQ_PARTS`); ``rows`` is empty when the model has no such block."""
    model = d.model
    if part in ("encoder", "encoder_adjoints"):
        return _cell_rows(d.encoder, "forward" if part == "encoder" else "adjoints"), printer("enc")
    if part in ("decoder", "decoder_adjoints"):
        return _cell_rows(d.decoder, "forward" if part == "decoder" else "adjoints"), printer("dec")
    if part in ("bridge", "bridge_adjoint"):  # applied once: no sum over steps
        return _stateless_part(d.bridge, "bridge", part == "bridge", "bar z", _once, sort=True)
    if part in ("attention", "attention_adjoints"):
        p = printer("attn")
        if d.attention is None:
            return [], p
        equations, adjoints = d.attention
        if part == "attention":
            return [(e.lhs, e.rhs) for e in equations], p
        return [(attention_lhs(lhs, p), rhs) for lhs, rhs in adjoints], p
    if part in ("combine", "combine_adjoints"):
        return _stateless_part(d.combine, "combine", part == "combine", "bar z[t]", lambda g: g, sort=False)
    if part in ("readout", "readout_adjoints"):
        p = printer("readout")
        forward, adjoints = readout_equations(model, p)
        return (forward if part == "readout" else adjoints), p
    if part == "paths":
        p = printer("paths")
        return [(r"\bar{h}^{\mathrm{enc}}_{s}" + CONTRIBUTION % name.replace(" path", ""), expr)
                for name, _, expr in d.paths], p
    from ..errors import UnknownNameError
    from .display import SEQ2SEQ_PARTS

    raise UnknownNameError(f"Unknown part {part!r} of a sequence-to-sequence derivation; expected some of "
                           f"{list(SEQ2SEQ_PARTS)}.")
