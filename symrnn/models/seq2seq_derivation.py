"""The symbolic derivation of a :class:`~symrnn.models.seq2seq.Seq2Seq`: each block's equations and adjoints and
the paths by which the gradient reaches the encoder states."""
from __future__ import annotations

import sympy as sp

from ..engine.bptt import Derivation
from ..engine.sequence_rules import sum_t
from ..engine.symbols import MatTVec, Param, tsym


class Seq2SeqDerivation:
    """The symbolic derivation of a :class:`Seq2Seq`: each block's equations and adjoints, printed from
    the objects the computation uses, and how ``dL/dh_enc_t`` is assembled from its paths.

    Attributes: ``encoder``, ``decoder`` (:class:`~symrnn.engine.bptt.Derivation` of each cell under an upstream
    gradient), ``bridge``, ``combine`` (of the stateless blocks, or None), ``attention`` (``(equations,
    adjoints)`` of the attention program, from the rules of :data:`symrnn.engine.sequence_rules.SEQUENCE_RULES`),
    ``decoder_input`` and ``readout_input`` (the pieces concatenated), ``paths`` (``[(name, where,
    SymPy expression)]``: the contributions to the adjoint of the encoder states).
    """

    def __init__(self, model):
        self.model = model
        self.encoder = model.encoder.derive()
        self.decoder = model.decoder.derive()
        self.bridge = self.combine = None
        if model.bridge is not None:
            cell = model.bridge.cell
            self.bridge = Derivation(cell, (), None, external={o: tsym(o, bar=True) for o in model.bridge.outputs})
        if model.combine is not None:
            cell = model.combine.cell
            self.combine = Derivation(cell, (), None, external={"htilde": tsym("htilde", bar=True)})
        self.attention = None
        if model.attention is not None:
            self.attention = model.attention.derivation("h[t-1]" if model.bahdanau else "h[t]")
        self.decoder_input = ["emb_tgt[y[t-1]]"] + (["z"] if model.context else []) + (
            ["ctx[t]"] if model.bahdanau else [])
        self.readout_input = [name + ("" if name == "z" else "[t]") for name, _ in model.readout_pieces]
        final = ("each direction's final state (s = S_n forward, s = 1 backward)" if model.top.bidirectional
                 else "the last real token s = S_n")
        self.paths = []
        if self.attention is not None:
            hbar = next(rhs for lhs, rhs in self.attention[1] if lhs.name == "bar hbar[s]")
            self.paths.append(("attention path", "every source position s", hbar))
        if model.bridge_mode == "copy":
            self.paths.append(("initial-state path", final, sp.Symbol(f"bar {model.out_state}[0]")))
        elif self.bridge is not None:
            self.paths.append(("initial-state path", final, self.bridge.input_gradient))
        if model.context:
            V_z = Param("V_z")
            self.paths.append(("context path", final,
                               sum_t(sp.Symbol("bar x_z[t]") + MatTVec(V_z, tsym("logit", bar=True)))))
        self.z_note = (f"z = [{', '.join('h_' + d + '[S_n]' for d in model.top.directions)}]: the top encoder layer's "
                       f"final output state(s); bar z is split back over them")
        self.zbar = sp.Symbol("bar z")

    def __repr__(self):
        m = self.model
        g_enc = next(iter(self.encoder.external.values()), "g[t]")
        lines = [f"{m!r}", "", f"Encoder (each direction of each layer; {g_enc} is what reaches its output h[t]):"]
        lines += ["  " + line for line in repr(self.encoder).splitlines()]
        if self.bridge is not None:
            lines += ["", "Bridge (z -> the decoder's initial states):"]
            lines += [f"  {e.lhs} = {e.rhs}" for e in self.bridge.forward]
            lines.append(f"  bar z = {self.bridge.input_gradient}")
            lines.append("  where bar <state>_init = dL/d<state>_0 of the decoder (below)")
        elif m.bridge_mode == "copy":
            lines += ["", f"Bridge: {m.out_state}[0] = z (copy); bar z = bar {m.out_state}[0]"]
        g_dec = next(iter(self.decoder.external.values()), "g[t]")
        lines += ["", f"Decoder (input x[t] = [{'; '.join(self.decoder_input)}]; {g_dec} is what reaches h[t]):"]
        lines += ["  " + line for line in repr(self.decoder).splitlines()]
        if self.attention is not None:
            equations, adjoints = self.attention
            lines += ["", f"Attention ({m.attention.score} score, {m.style} style; rules from SEQUENCE_RULES):"]
            lines += [f"  {e.lhs} = {e.rhs}" for e in equations]
            lines += [f"  {lhs} = {rhs}" for lhs, rhs in adjoints]
        if self.combine is not None:
            lines += ["", "Attentional state (Luong):"]
            lines += [f"  {e.lhs} = {e.rhs}" for e in self.combine.forward]
            lines.append(f"  bar z_c[t] = {self.combine.input_gradient}   (z_c[t] = [ctx[t]; h[t]])")
        lines += ["", f"Readout: logit[t] = V r[t] + c, r[t] = [{'; '.join(self.readout_input)}]; "
                      f"bar logit[t] = (yhat[t] - y[t]) * scale * mask[t]"]
        lines += ["", "How the gradient reaches the encoder states hbar[s] (the top layer's outputs):",
                  f"  {self.z_note}"]
        for name, where, expr in self.paths:
            lines.append(f"  {name} (enters at {where}): {expr}")
        lines.append("  dL/dh_enc[s] = " + " + ".join(name for name, _, _ in self.paths)
                     + " + what step s+1 of the encoder sends back (its adjoint recurrence above)")
        return "\n".join(lines)
