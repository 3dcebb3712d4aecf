"""Sharpness against sequence length: the top Hessian eigenvalue of the loss by power iteration.

The curvature of an RNN's loss grows (or not) with the length of the sequences it is trained on:
the largest eigenvalue of the Hessian, the *sharpness*, bounds the learning rate gradient descent
can take (``2 / lambda_max``).  It is found here by power iteration on the exact Hessian-vector
product (:meth:`symrnn.Model.hessian_vector_product`, forward over reverse), without ever forming
the Hessian.  Power iteration converges to the eigenvalue of largest magnitude at the rate
``|lambda_2 / lambda_1|`` per product, so it stalls when two eigenvalues of opposite sign have nearly
the same magnitude (common: the loss of an RNN is a saddle in many directions).  ``method="lanczos"``
(the default) builds the Krylov space of the same products (Lanczos, with full
re-orthogonalisation) and takes the Ritz value of largest magnitude, which separates them in a few
dozen products.  The sign is kept: a saddle's negative curvature can dominate.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..errors import ParameterError
from ..fileio import write_atomic


@dataclass
class TopEigenvalue:
    """The eigenvalue of largest magnitude of the loss's Hessian, its unit eigenvector (a dict like
    the parameters), the iterations used, whether it converged, and the Rayleigh quotients met."""

    value: float
    vector: dict = field(repr=False)  # as large as the parameters: not printed
    iterations: int
    converged: bool
    history: list = field(default_factory=list, repr=False)


def _dot(a, b):
    return float(sum((a[k] * b[k]).sum() for k in a))


def top_hessian_eigenvalue(model, params, inputs, targets, h0=None, mask=None, iterations=200, rtol=1e-10,
                           seed=0, method="lanczos") -> TopEigenvalue:
    """The eigenvalue of largest magnitude of the Hessian of the loss, from products ``H v`` only.

    Parameters
    ----------
    model : Model
    params : dict
    inputs, targets, h0, mask
        As :meth:`symrnn.Model.loss_and_grads`.
    iterations : int
        At most this many products.
    rtol : float
        Lanczos: stop when the Ritz residual ``|Hv - lambda v|`` is at most ``rtol |lambda|``.
        Power: when the Rayleigh quotient changes by at most ``rtol`` relative and the residual is
        at most ``sqrt(rtol) |lambda|``.
    seed : int
        Seed of the starting direction.
    method : str
        ``"lanczos"`` (default) or ``"power"`` (plain power iteration).

    Returns
    -------
    TopEigenvalue

    Examples
    --------
    >>> import numpy as np, symrnn as sr
    >>> from symrnn.decay.sharpness import top_hessian_eigenvalue
    >>> model = sr.Model("rnn-tanh", D=2, H=3, K=2, loss="mse")
    >>> params = model.init_params(seed=0)
    >>> rng = np.random.default_rng(0)
    >>> top = top_hessian_eigenvalue(model, params, rng.normal(size=(5, 2, 2)), rng.normal(size=(5, 2, 2)))
    >>> top.converged, top.value > 0
    (True, True)
    """
    if isinstance(iterations, bool) or not isinstance(iterations, (int, np.integer)) or iterations < 1:
        raise ParameterError(f"iterations must be a positive integer, got {iterations!r}.")
    if method not in ("lanczos", "power"):
        raise ParameterError(f"method must be 'lanczos' or 'power', got {method!r}.")
    if method == "lanczos":
        return _lanczos(model, params, (inputs, targets, h0, mask), iterations, rtol, seed)
    rng = np.random.default_rng(seed)
    v = {k: rng.normal(size=np.shape(p)) for k, p in params.items()}
    norm = np.sqrt(_dot(v, v))
    v = {k: a / norm for k, a in v.items()}
    history, value, converged = [], np.nan, False
    for it in range(1, iterations + 1):
        hv = model.hessian_vector_product(params, v, inputs, targets, h0, mask)[2]
        new = _dot(v, hv)
        residual = np.sqrt(sum(((hv[k] - new * v[k]) ** 2).sum() for k in v))
        history.append(new)
        norm = np.sqrt(_dot(hv, hv))
        if norm == 0:
            return TopEigenvalue(0.0, v, it, True, history)
        if abs(new - value) <= rtol * abs(new) and residual <= np.sqrt(rtol) * abs(new):
            converged = True
            value = new
            break
        value = new
        v = {k: a / norm for k, a in hv.items()}
    return TopEigenvalue(float(value), v, it, converged, history)


def _lanczos(model, params, problem, iterations, rtol, seed):
    keys = list(params)
    shapes = [np.shape(params[k]) for k in keys]
    cuts = np.cumsum([int(np.prod(s)) for s in shapes])[:-1]

    def as_dict(flat):
        return {k: a.reshape(s) for k, a, s in zip(keys, np.split(flat, cuts), shapes)}

    def product(flat):
        hv = model.hessian_vector_product(params, as_dict(flat), *problem)[2]
        return np.concatenate([hv[k].ravel() for k in keys])

    q = np.random.default_rng(seed).normal(size=int(sum(int(np.prod(s)) for s in shapes)))
    basis, alphas, betas, history = [q / np.linalg.norm(q)], [], [], []
    value, vector, converged = 0.0, basis[0], False
    for it in range(1, min(iterations, basis[0].size) + 1):
        w = product(basis[-1])
        alphas.append(float(basis[-1] @ w))
        Q = np.array(basis)
        w -= Q.T @ (Q @ w)  # full re-orthogonalisation (twice is enough)
        w -= Q.T @ (Q @ w)
        beta = float(np.linalg.norm(w))
        T = np.diag(alphas) + np.diag(betas, 1) + np.diag(betas, -1)
        theta, S = np.linalg.eigh(T)
        i = int(np.argmax(np.abs(theta)))
        value, vector = float(theta[i]), S[:, i] @ Q
        history.append(value)
        if beta * abs(S[-1, i]) <= rtol * abs(value) or beta == 0.0 or it == basis[0].size:
            converged = True
            break
        betas.append(beta)
        basis.append(w / beta)
    return TopEigenvalue(value, as_dict(vector / np.linalg.norm(vector)), it, converged, history)


def sharpness_by_length(model, params, lengths, N=4, seed=0, **options) -> list:
    """The top Hessian eigenvalue for inputs and targets of each length in ``lengths`` (standard
    normal inputs, random targets of the model's loss, drawn once for the longest length and cut:
    each shorter problem is a prefix of the longer; a many-to-one model scores the last step against
    one fixed target).  Returns rows ``(T, TopEigenvalue)``.

    Examples
    --------
    >>> import symrnn as sr
    >>> from symrnn.decay.sharpness import sharpness_by_length
    >>> model = sr.Model("gru", D=2, H=3, K=2, reduction="mean")
    >>> rows = sharpness_by_length(model, model.init_params(seed=0), [2, 8], N=2)
    >>> [T for T, _ in rows], all(r.converged for _, r in rows)
    ([2, 8], True)
    """
    lengths = sorted(int(T) for T in lengths)
    if not lengths or lengths[0] < 1:
        raise ParameterError(f"lengths must be positive integers, got {lengths!r}.")
    rng = np.random.default_rng(seed)
    T_max, D = lengths[-1], model.sizes["D"]
    x = rng.normal(size=(T_max, N, D))
    if model.loss_rule.name == "cross-entropy":
        y = rng.integers(0, model.sizes["K"], size=(T_max, N))
    else:
        y = rng.normal(size=(T_max, N, model.sizes["K"] if model.readout is not None else model.sizes["H"]))
    arch = model.architecture.name
    if arch not in ("many-to-many", "many-to-one"):
        raise ParameterError(f"sharpness_by_length runs many-to-many or many-to-one models, not {arch!r}.")
    rows = []
    for T in lengths:
        targets = y[:T] if arch == "many-to-many" else y[:1]
        rows.append((T, top_hessian_eigenvalue(model, params, x[:T], targets, seed=seed, **options)))
    return rows


def sharpness_figure(curves, path, title="Sharpness against sequence length"):
    """A PNG of ``|lambda_max|`` against ``T`` (log-log), one line per entry of ``curves``
    (label -> rows of :func:`sharpness_by_length`); negative eigenvalues are drawn hollow."""
    import io

    from matplotlib.figure import Figure  # a figure of its own: pyplot's state is left alone

    fig = Figure(figsize=(5.5, 3.6), layout="constrained")
    ax = fig.subplots()
    for label, rows in curves.items():
        Ts = [T for T, _ in rows]
        values = [abs(r.value) for _, r in rows]
        line, = ax.plot(Ts, values, "-", label=label)
        for T, r in rows:
            ax.plot([T], [abs(r.value)], "o", color=line.get_color(),
                    markerfacecolor=line.get_color() if r.value >= 0 else "none")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("sequence length T")
    ax.set_ylabel(r"$|\lambda_{\max}(\nabla^2 L)|$")
    ax.set_title(title)
    ax.legend(frameon=False)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    write_atomic(path, buf.getvalue())
    return path
