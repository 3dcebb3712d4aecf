"""Backward passes written in PyTorch and JAX, verified as the NumPy ones are.

A ``torch.autograd.Function`` subclass, a ``torch.library`` custom operator with a registered
autograd formula, an ``nn.Module`` whose forward calls one of these, or a JAX function with a
``custom_vjp`` is adapted (:mod:`~symrnn.verify.frameworks.torch`,
:mod:`~symrnn.verify.frameworks.jax`) into a NumPy layer -- ``forward(x, h0[, c0], *weights) ->
(h, cache)``, ``backward(dh, cache) -> (dx, dh0[, dc0], *dweights)`` -- that runs the user's forward
and backward in their framework and dtype and hands the results back as NumPy arrays.  The
verifier then judges it as any layer (:func:`symrnn.verify.verify_layer`): the cell declared,
matched or traced, the gradients against symrnn's exact float64 ones under the error model of the
code's dtype, the first wrong step and gate localised.

Neither framework is imported unless a target comes from it: NumPy code is verified without them.
"""
from __future__ import annotations

import sys

from ...errors import UnknownNameError

__all__ = ["framework_of", "verify_framework"]


def framework_of(target) -> str | None:
    """``"torch"`` or ``"jax"`` when ``target`` is code of that framework, else None.

    Looks only at frameworks already imported (a target of one has imported it), so that calling
    it never imports torch or JAX.

    Parameters
    ----------
    target : object
        What the user asked to verify.

    Returns
    -------
    str or None

    Examples
    --------
    >>> from symrnn.verify.frameworks import framework_of
    >>> framework_of(len) is None
    True
    """
    if sys.modules.get("torch") is not None:
        from . import torch as adapter

        if adapter.is_torch_target(target):
            return "torch"
    if sys.modules.get("jax") is not None:
        from . import jax as adapter

        if adapter.is_jax_target(target):
            return "jax"
    return None


def verify_framework(target, cell=None, layout=None, *, dtype=None, batch_first=None, device=None, heads=None,
                     **options):
    """Verify a PyTorch or JAX backward against symrnn's exact gradients.

    Parameters
    ----------
    target : object
        A ``torch.autograd.Function`` subclass, a ``torch.library`` custom operator (with
        ``register_autograd``), an ``nn.Module`` whose forward calls one, or a JAX function (a
        ``jax.custom_vjp``).  Its data arguments are named as symrnn reads roles (``x``, ``h0``,
        ``c0``), its weights as PyTorch's (``weight_ih``, ``weight_hh``, ``bias_ih``, ``bias_hh``;
        a module's ``weight_ih_l0`` ...); it returns the states of every step first (``(T, N, H)``,
        or ``(N, T, H)`` batch-first); of what follows, the final states (``h_n``: the last step's
        states, any shape of that size; ``c_n``: the one other output of that size, as ``nn.LSTM``'s
        ``(hs, (h_n, c_n))``) get a gradient of their own in the main case, the rest is ignored.
    cell : str or Cell, optional
        The cell the code computes; found from the forward when None.
    layout : str or Layout, optional
        Default PyTorch's: column convention ``W x``, gate order LSTM ``i, f, g, o``, GRU ``r, z, n``.
    dtype : str or framework dtype, optional
        The dtype the code runs in (``"float64"``, ``"float32"``, ``"float16"``, ``"bfloat16"``);
        a module's own dtype by default, else float64.  The exact gradient is computed in float64
        from the same (rounded) inputs; the error model is the dtype's.
    batch_first : bool, optional
        ``(N, T, D)`` inputs; a module's own ``batch_first`` by default, else found from the code.
    device : str, optional
        Where the code runs (torch: ``"cuda"`` ...); the exact route runs on the CPU.
    heads : int, optional
        The code's states are split into heads, ``(N, heads, H/heads)`` (and ``(T, N, heads, H/heads)``
        for every step), its stacked weights' rows ordered head by head or gate by gate (both are
        tried); a gradient summed over the wrong axis of the heads is named
        (:mod:`~symrnn.verify.frameworks.heads`).
    **options
        As :func:`symrnn.verify.verify_layer` (``D``, ``H``, ``T``, ``N``, ``scale``, ``seed``,
        ``lengths``, ``search``, ``save_to``, ``replay``, ``truncation``, ``clip``, ``zero_states``).

    Returns
    -------
    Verification
        As :func:`symrnn.verify.verify_layer`; ``result.found`` names the framework and dtype,
        ``result.hygiene`` holds saved tensors modified in place after the forward.
    """
    kind = framework_of(target)
    if kind is None:
        raise UnknownNameError(f"{target!r} is no torch.autograd.Function, torch.library custom operator, "
                               f"nn.Module or JAX function; verify NumPy code with verify_layer.")
    from .adapted import verify_adapted

    if kind == "torch":
        from .torch import adapt
    else:
        from .jax import adapt
    code = adapt(target, dtype=dtype, device=device)
    if heads is not None and heads != 1:
        from .heads import with_heads

        if isinstance(heads, bool) or not isinstance(heads, int) or heads < 1:
            raise UnknownNameError(f"heads={heads!r}: give the number of heads, a positive integer.")
        code = with_heads(code, heads)
    return verify_adapted(code, cell, layout, batch_first, options, heads=heads or 1)
