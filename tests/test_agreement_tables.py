"""The agreement tables of `symrnn check` and `make demo` (symrnn.checks) for the cells the demo runs
last: the matrix-state cells, and a cell with a constant of its own (sqrt(2)) in the torch oracle."""
import sympy as sp

import symrnn as sr
from symrnn.checks import agreement_table


def rows(table):
    return [line for line in table.splitlines() if line.startswith("| ") and not line.startswith("| oracle")]


def test_the_matrix_state_cells_get_a_whole_table():
    """mLSTM's key is W_k x / sqrt(2) (torch.sqrt of a Python number crashed the torch oracle); each row
    either agrees or says why it does not apply, as `make demo` prints it for every built-in cell."""
    for cell in ("mlstm", "s6"):
        table = agreement_table(sr.Model(cell, D=3, H=4, K=3), T_in=3, N=1)
        found = rows(table)
        assert any(r.startswith("| PyTorch autograd") for r in found), table
        for r in found:
            assert r.endswith("| yes |") or ("does not apply" in r and r.endswith("| n/a |")), table


def test_a_constant_of_the_cells_own_reaches_the_torch_oracle():
    cell = sr.Cell("sqrt-scaled")
    x, h = cell.input(), cell.state("h")
    U, W, b = cell.param("U", "H", "D"), cell.param("W", "H", "H"), cell.param("b", "H")
    cell.update(h, sr.tanh(U @ x + W @ h / sp.sqrt(2) + sp.log(2) * b))
    table = agreement_table(sr.Model(cell, D=2, H=3, K=2), T_in=3, N=1)
    torch_row = next(r for r in rows(table) if r.startswith("| PyTorch autograd"))
    assert torch_row.endswith("| yes |"), table
