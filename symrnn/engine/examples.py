"""Two user-defined cells, written only with the public interface.

They are examples to copy: each is a function returning a :class:`symrnn.Cell`,
usable everywhere a built-in cell is (``symrnn.Model(peephole_lstm(), ...)``,
``symrnn derive symrnn.engine.examples:peephole_lstm -o peephole.tex``).
"""
import symrnn as sr


def peephole_lstm() -> sr.Cell:
    """LSTM with peephole connections (Gers & Schmidhuber 2000).

    The gates also see the cell state through diagonal weights (vectors
    ``p_i``, ``p_f``, ``p_o``): the input and forget gates the previous one,
    the output gate the new one.
    """
    cell = sr.Cell("peephole-lstm", "LSTM with peephole connections")
    x = cell.input()
    h = cell.state("h", role="hidden state")
    c = cell.state("c", role="cell state")

    def weights(gate):
        return (cell.param(f"U_{gate}", "H", "D"), cell.param(f"W_{gate}", "H", "H"),
                cell.param(f"b_{gate}", "H"))

    (U_i, W_i, b_i), (U_f, W_f, b_f), (U_g, W_g, b_g), (U_o, W_o, b_o) = map(weights, "ifgo")
    p_i, p_f, p_o = (cell.param(f"p_{gate}", "H", role=f"peephole of gate {gate}") for gate in "ifo")
    i = cell.let("i", sr.sigmoid(U_i @ x + W_i @ h + p_i * c + b_i), role="input gate")
    f = cell.let("f", sr.sigmoid(U_f @ x + W_f @ h + p_f * c + b_f), role="forget gate")
    g = cell.let("g", sr.tanh(U_g @ x + W_g @ h + b_g), role="candidate cell")
    c_t = cell.update(c, f * c + i * g)
    o = cell.let("o", sr.sigmoid(U_o @ x + W_o @ h + p_o * c_t + b_o), role="output gate")
    cell.update(h, o * sr.tanh(c_t))
    cell.output("h")
    return cell.validate()


def minimal_gated_unit() -> sr.Cell:
    """Minimal gated unit (Zhou et al. 2016): one forget gate does the work of
    the GRU's reset and update gates."""
    cell = sr.Cell("mgu", "minimal gated unit")
    x = cell.input()
    h = cell.state("h", role="hidden state")
    U_f, W_f, b_f = cell.param("U_f", "H", "D"), cell.param("W_f", "H", "H"), cell.param("b_f", "H")
    U_n, W_n, b_n = cell.param("U_n", "H", "D"), cell.param("W_n", "H", "H"), cell.param("b_n", "H")
    f = cell.let("f", sr.sigmoid(U_f @ x + W_f @ h + b_f), role="forget gate")
    n = cell.let("n", sr.tanh(U_n @ x + W_n @ (f * h) + b_n), role="candidate state")
    cell.update(h, (1 - f) * h + f * n)
    return cell.validate()
