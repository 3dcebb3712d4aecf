"""The verifier's entry points: :func:`verify_layer`, :func:`verify_step`, :func:`verify_layer_object`
and :func:`verify_loss` declare the model, the layout and the cases, then run them
(:mod:`symrnn.verify.cases`)."""
from __future__ import annotations

import inspect
import shlex
from dataclasses import replace

import numpy as np

from ..engine.cells import builtin_cell
from ..errors import UnknownNameError, UserCodeError, UserCodeExit
from ..models.layouts import Layout, layout_for
from ..models.model import Model
from .cases import Declared, declared_problems, replay_sizes, run_cases, run_declared
from .frameworks.stacked import stacked_like, without_recurrent_weights
from .modes import LayerFunctions, LayerObject, LossFunction, state_of_role
from .problems import LONG_MARK, Plan, draw, padding_mask, settle_clipping
from .replay import declared_cli_command, shown_path
from .result import Verification
from ..validation import check_count
from .native import NATIVE, is_native, native_signature, takes_native
from .signatures import Signature, has_signature, signature_for


def _cell_name(cell):
    return cell if isinstance(cell, str) else cell.name


_MODELS = {}


def _model(cell, D, H, K=None, **kwargs):
    """A model per configuration: built-in cells are derived and compiled once per process."""
    if not isinstance(cell, str):
        return Model(cell, D=D, H=H, K=K, **kwargs)
    key = (cell, D, H, K, tuple(sorted(kwargs.items())))
    if key not in _MODELS:
        _MODELS[key] = Model(builtin_cell(cell), D=D, H=H, K=K, **kwargs)
    return _MODELS[key]


# -- the public entry points -----------------------------------------------------------------
def _check_sizes(**sizes):
    for name, value in sizes.items():
        check_count(name, value)


def _lengths(plan):
    return [t for t in plan.lengths if t < plan.T]


def verify_layer(forward, backward, cell="rnn-tanh", layout=None, *, D=3, H=4, T=8, N=3, scale=None, seed=0,
                 signature=None, lengths=(1, 2, 3), truncation=None, clip=None, replay=None,
                 save_to=None, search=0, zero_states=(), replay_command=None) -> Verification:
    """Verify a hand-written layer: ``forward(x, h0, *params) -> (h, cache)`` and
    ``backward(dh, cache) -> (dx, dh0, *dparams)`` (CS231n's ``rnn_forward``/``rnn_backward``).

    ``layout`` is a preset name (``cs231n``, the default, ``pytorch``, ``keras``, ``dlfs2``, ``minchar``)
    or a :class:`symrnn.models.layouts.Layout`; ``signature`` (a :class:`Signature`) describes another calling
    convention.  Sizes and values are chosen here unless given.  Returns a :class:`Verification`.

    On a failure the smallest failing case is saved (``save_to``, default a temporary file) and
    ``result.minimal`` holds its path, sizes and the command that replays it; ``replay=path``
    runs a saved case again.  ``truncation`` and ``clip`` as in :func:`verify_loss`.
    ``search=n`` also tries ``n`` cases drawn by Hypothesis (:mod:`symrnn.strategies`: lengths,
    sizes, weights from tiny to saturating, inputs, upstream gradients), deterministically.

    Parameters
    ----------
    forward, backward : callable
        Your layer's forward and backward, called as ``signature`` says.
    cell : str or Cell
        The cell the code implements (a built-in name or a :class:`~symrnn.Cell`).
    layout : str or Layout
        How the code lays out weights, inputs and states.
    D, H, T, N : int
        Sizes of the main case.
    scale : float, optional
        Half-width of the uniform weights (default ``1/sqrt(H)``).
    seed : int
    signature : Signature or str, optional
    lengths : tuple of int
        The shorter sequence lengths also run.
    truncation, clip : optional
        Declared truncated BPTT and gradient clipping (see :func:`verify_loss`).
    replay : str or path, optional
        A saved minimal case to run again.
    save_to : str or path, optional
        Where the smallest failing case is saved.
    search : int
        Cases drawn by Hypothesis in addition to the fixed ones.
    zero_states : tuple of str
        Initial states that are zero (``("h0",)``, ``("h0", "c0")``): for code that starts from
        zeros.  A state the signature does not pass (no ``h0`` or ``c0`` argument) is zero anyway.
    replay_command : callable, optional
        ``path -> str``: the command printed to replay a saved minimal case, for a tool that calls
        the verifier for its users (``symrnn verify`` prints the command line that was typed).
        Default: the shortest command or Python call that reaches the user's functions.

    With ``cell=None`` the forward is the specification (:mod:`symrnn.verify.auto`): the built-in
    cell and the layout it computes are found from the code (``layout`` narrows the search), or,
    when it computes no built-in cell, the cell is traced from the code; ``result.found`` says
    which, with the traced equations.

    Returns
    -------
    Verification
        ``ok``, the forward check, every gradient's verdict; ``str()`` is the report.

    Examples
    --------
    >>> import symrnn.verify as V
    >>> from symrnn import example_backprop as ex
    >>> V.verify_layer(ex.rnn_forward, ex.rnn_backward, cell="rnn-tanh", layout="cs231n").ok
    True
    >>> wrong = V.verify_layer(ex.buggy_rnn_forward, ex.buggy_rnn_backward)
    >>> wrong.ok, wrong.fingerprint.name
    (False, 'recurrent-term-dropped')
    >>> print(wrong.summary())  # doctest: +ELLIPSIS
    rnn-tanh layer code is wrong: the recurrent term is dropped: ... smallest failing case T=2, N=1, D=1, H=1
    """
    _check_sizes(D=D, H=H, T=T, N=N)
    options = dict(D=D, H=H, T=T, N=N, scale=scale, seed=seed, signature=signature, lengths=lengths,
                   truncation=truncation, clip=clip, replay=replay, save_to=save_to, search=search,
                   zero_states=zero_states)
    if cell is not None and layout in (None, "auto") and signature is None and takes_native(forward):
        layout = "symrnn"  # a params dict in symrnn's names (x, h0 or s0, params): no other layout takes one
    if cell is None and is_native(layout):
        raise UnknownNameError("layout='symrnn' (symrnn's own names, a params dict) needs the cell declared: pass "
                               "cell= (on the command line --cell NAME; `symrnn cells` lists them).")
    if cell is None or layout == "auto":  # the forward is the specification
        return _verify_from_code(forward, backward, cell, layout, options, replay_command)
    if isinstance(cell, str) and isinstance(layout or "", str) and signature is None and not is_native(layout) \
            and without_recurrent_weights(cell):  # minGRU in CS231n's names: a preset stacks no such cell
        from .auto import find

        found = find(forward, cell=cell, layout=stacked_like(layout_for(layout or "cs231n", "rnn-tanh"), cell))
        return _verify_found(found, forward, backward, options, replay_command)
    if isinstance(cell, str) and isinstance(layout, str) and signature is None and not is_native(layout) \
            and not has_signature(layout, "layer", cell):  # a preset's arrays, the calling convention read
        return _narrowed(forward, backward, cell, layout, options, replay_command)
    try:
        return _verify_declared_layer(forward, backward, cell, layout, **options, command=replay_command)
    except UserCodeError as exc:
        if layout is not None or signature is not None or isinstance(exc, UserCodeExit):
            raise
        raise UserCodeError(  # the default layout was assumed, not declared: say so
            f"{exc} (symrnn called your code as CS231n's layer, the default layout: x of shape (N, T, D), "
            f"forward(x, h0, Wx, Wh, b); if yours is laid out otherwise, pass layout=..., or cell=None to find "
            f"the cell and layout from your forward)") from exc



def _calling_convention(signature, layout, mode, cell):
    """The signature given, else the named preset's; a :class:`Layout` object describes arrays only, so
    CS231n's argument order is assumed for it where CS231n has one, and otherwise the message names it."""
    if signature is not None or layout is None or isinstance(layout, str):
        return signature_for(signature or layout or "cs231n", mode, cell)
    if has_signature("cs231n", mode, cell):
        return signature_for("cs231n", mode, cell)
    raise UnknownNameError(
        f"The layout {layout.name!r} says how your arrays are laid out, not how your {mode}-mode functions are "
        f"called, and no preset's argument order applies to this cell in {mode} mode: pass "
        f"signature=symrnn.verify.Signature(forward_args, forward_returns, backward_args, backward_returns).")

def _verify_declared_layer(forward, backward, cell, layout, *, D, H, T, N, scale, seed, signature, lengths,
                           truncation, clip, replay, save_to, search, zero_states, found="", command=None):
    """verify_layer of a declared cell and layout; ``found`` and ``command`` as in :class:`Declared`."""
    _check_sizes(D=D, H=H, T=T, N=N)
    layout = "cs231n" if layout is None else layout
    replayed, D, H, _ = replay_sizes(replay, D, H, None)
    model = _model(cell, D, H, loss="upstream")
    if is_native(layout):  # symrnn's own names: the calling convention read from the code
        L = NATIVE if isinstance(layout, str) else layout  # a framework's arguments named as the cell's parameters
        sig = signature_for(signature, "layer", model.cell) if signature is not None \
            else native_signature(forward, backward, model)
    else:
        L, sig = layout_for(layout, cell), _calling_convention(signature, layout, "layer", model.cell)
    adapter = LayerFunctions(model, L, sig, forward, backward)
    plan = Plan(T=T, N=N, scale=scale, seed=seed, lengths=lengths)
    zero = _zero_states(model, sig, zero_states)
    declared = Declared(_meta("layer", cell, L), lambda D, H: _model(cell, D, H, loss="upstream"),
                        (forward, backward), save_to, search=search, zero_states=zero,
                        cli=_cli_expressible(cell, layout, signature), found=found, command=command)
    final = _final_states(model, sig)
    return run_declared(adapter, lambda: _layer_problems(model, plan, T, seed, zero, final), declared, replayed,
                        truncation, clip)


def _narrowed(forward, backward, cell, layout, options, replay_command):
    """verify_layer of a declared built-in cell in a preset layout that has no calling convention in layer
    mode (keras): the argument order found from the forward, or the preset's refusal with why."""
    from .trace import TracingError

    try:
        return _verify_from_code(forward, backward, cell, layout_for(layout, cell), options, replay_command,
                                 narrow=True)
    except (UnknownNameError, TracingError) as exc:
        try:
            signature_for(layout, "layer", cell)
        except UnknownNameError as refusal:
            raise UnknownNameError(f"{refusal} (nor does the forward compute {cell!r} in the {layout!r} layout "
                                   f"in another argument order: {exc})") from None
        raise


def _verify_from_code(forward, backward, cell, layout, options, replay_command=None, narrow=False):
    """verify_layer with the cell and layout found from the code (:mod:`symrnn.verify.auto`); a
    replay command that declares no more than the user did; ``narrow``: the declared cell and layout
    (a preset without a calling convention in layer mode) only, its calling convention found."""
    wanted = cell if layout == "auto" or narrow else None
    if _is_object_method(forward):  # net.forward, net.backward: the object's arrays are the weights
        from .auto_object import find_object

        found, code, D, H = find_object(forward, backward, cell=wanted)
        name = getattr(forward.__self__, "__name__", None) or "net"

        def command(path):
            return (f"symrnn.verify.verify_layer({name}.forward, {name}.backward, cell=None, "
                    f"replay={shown_path(path)!r})")
        try:
            return _verify_found(found, code.forward, code.backward, dict(options, D=D, H=H, signature=None),
                                 replay_command or command)
        finally:
            code.restore()
    from .auto import find

    found = find(forward, cell=wanted, layout=layout if isinstance(layout, Layout) else None
                 if layout in (None, "auto") else layout_for(layout, "rnn-tanh"))
    if replay_command is None:
        cli = declared_cli_command(forward, backward)

        def replay_command(path):
            return " ".join(shlex.quote(p) for p in cli + ["--replay", shown_path(path)])
        replay_command = None if cli is None else replay_command
    return _verify_found(found, forward, backward, options, replay_command)


def _verify_found(found, forward, backward, options, command=None):
    """verify_layer against what :mod:`symrnn.verify.auto` found: on a batch when the code runs on one
    (its forward and its backward), else one example at a time."""
    N = options["N"]
    signature = options["signature"] or found.signature

    def run(n, text):
        return _verify_declared_layer(forward, backward, found.cell, found.layout,
                                      **dict(options, N=n, signature=signature), found=text, command=command)
    if found.N == 1 or N == 1:
        return run(1, found.text)
    try:
        return run(N, found.text)
    except UserCodeExit:
        raise
    except UserCodeError as exc:  # code written for one example at a time: its backward may need N = 1
        try:
            return run(1, f"{found.text}; one example at a time (the code failed on a batch of {N}: N = 1)")
        except UserCodeError:
            raise exc from None


def _is_object_method(forward):
    """``forward`` is a bound method whose arguments are data only (its weights live on the object)."""
    if getattr(forward, "__self__", None) is None or inspect.ismodule(forward.__self__):
        return False
    from .auto import ROLE_NAMES

    data = {n for r in ("x", "h0", "c0") for n in ROLE_NAMES[r]}
    params = [p.name.lower() for p in inspect.signature(forward).parameters.values()
              if p.default is p.empty and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
    return bool(params) and all(p in data for p in params)


def _zero_states(model, sig, declared=()):
    """The states that start at zero on both sides: those the signature does not pass (the code
    starts from zeros) and those declared zero (``zero_states=("h0",)`` or ``("h",)``)."""
    names = {f"{s}0": s for s in model.state_names}
    declared = (declared,) if isinstance(declared, str) else tuple(declared or ())
    if "h" not in model.state_names and sig is not None and "h0" in sig.forward_args:  # the output state's
        names = {("h0" if s == state_of_role(model, "h0") else r): s for r, s in names.items()}
    unknown = [d for d in declared if d not in names and d not in names.values()]
    if unknown:
        raise UnknownNameError(f"zero_states={declared!r}: {unknown} name no initial state of {model.cell.name!r}; "
                               f"its initial states are {sorted(names)}.")
    passed = sig is None or "s0" in sig.forward_args  # s0: every initial state, by name
    zero = set() if passed else {s for role, s in names.items() if role not in sig.forward_args}
    zero |= {names.get(d, d) for d in declared}
    return tuple(s for s in model.state_names if s in zero)


def _final_states(model, sig):
    """The final states whose incoming gradient the code takes (``dh_n``, ``dc_n``: a framework's
    ``h_n``, ``c_n``): the main case sends one into each, drawn independently of the others."""
    roles = sig.backward_args if sig is not None else ()
    return tuple(s for role, s in (("dh_n", "h"), ("dc_n", "c")) if role in roles and s in model.state_names
                 and (s != "h" or model.out == "h"))


def _layer_problems(model, plan, T, seed, zero, final=()):
    at = f" and at the final state{'s' if len(final) > 1 else ''} {', '.join(s + '_n' for s in final)}" if final \
        else ""
    problems = [draw(model, plan, T, f"T={T}, upstream gradients at every step{at}", seed, zero, final=final),
                draw(model, plan, T, f"T={T}, upstream gradient at step 1 only", seed + 1, zero, upstream=0)]
    if T > 1:
        problems.append(draw(model, plan, T, f"T={T}, upstream gradient at the last step only", seed + 2, zero,
                             upstream=T - 1))
    problems += [draw(model, plan, t, f"T={t}, upstream gradients at every step", seed + 3 + t, zero)
                 for t in _lengths(plan)]
    return problems + _long(plan, T, lambda t, n: draw(model, replace(plan, N=n), t, _LONG_LABEL.format(T=t, N=n),
                                                       seed + 100, zero))


#: a longer case than the main one: a backward that stops after its last k steps (a hard-coded
#: truncation, k < LONG_T) passes every shorter case; N and the sizes small, so that it stays cheap
LONG_T, LONG_N = 48, 2
_LONG_LABEL = "T={T}, N={N}, upstream gradients at every step " + LONG_MARK


def _long(plan, T, make):
    """``[make(LONG_T, N)]`` when the main case is shorter than :data:`LONG_T` (else nothing)."""
    return [make(LONG_T, min(LONG_N, plan.N))] if T < LONG_T else []


def verify_step(step_forward, step_backward, cell="rnn-tanh", layout="cs231n", *, D=3, H=4, N=3, scale=None,
                seed=0, signature=None, replay=None, save_to=None) -> Verification:
    """Verify one step: ``step_forward(x, prev_h[, prev_c], *params) -> (next_h[, next_c], cache)`` and
    ``step_backward(dnext_h[, dnext_c], cache) -> (dx, dprev_h[, dprev_c], *dparams)``.

    Two cases are run, the second with saturating weights. The arguments are those of
    :func:`verify_layer`; with ``cell=None`` the cell, its gate order and the layout are found from the
    step (run over a sequence, as :func:`verify_layer` finds a layer's; :mod:`symrnn.verify.auto_step`),
    or traced from it, and the step's calling convention is read from its argument names.

    Returns
    -------
    Verification

    Examples
    --------
    >>> import numpy as np, symrnn.verify as V
    >>> def step_forward(x, prev_h, Wx, Wh, b):
    ...     h = np.tanh(x @ Wx + prev_h @ Wh + b)
    ...     return h, (x, prev_h, Wx, Wh, h)
    >>> def step_backward(dh, cache):
    ...     x, prev_h, Wx, Wh, h = cache
    ...     da = dh * (1 - h ** 2)
    ...     return da @ Wx.T, da @ Wh.T, x.T @ da, prev_h.T @ da, da.sum(axis=0)
    >>> V.verify_step(step_forward, step_backward, cell="rnn-tanh", layout="cs231n").ok
    True
    """
    _check_sizes(D=D, H=H, N=N)
    found = ""
    if cell is None:  # the step is the specification
        from .auto_step import find_step

        spec = find_step(step_forward, layout=None if layout is None else layout_for(layout, "rnn-tanh"))
        cell, layout, signature, found = spec.cell, spec.layout, signature or spec.signature, spec.text
        N = 1 if spec.N == 1 else N
    replayed, D, H, _ = replay_sizes(replay, D, H, None)
    model = _model(cell, D, H, loss="upstream")
    L = layout_for(layout, cell)
    sig = _calling_convention(signature, layout, "step", model.cell)
    adapter = LayerFunctions(model, L, sig, step_forward, step_backward, step=True)
    plan = Plan(T=1, N=N, scale=scale, seed=seed)
    final = ("c",) if "dc" in sig.backward_args else ()
    declared = Declared(_meta("step", cell, L), lambda D, H: _model(cell, D, H, loss="upstream"),
                        (step_forward, step_backward), save_to, cli=_cli_expressible(cell, layout, signature),
                        found=found)
    return run_declared(adapter, lambda: [draw(model, plan, 1, "one step", seed, final=final),
                                          draw(model, plan, 1, "one step, saturating weights", seed + 1,
                                               final=final, scale=2.0)], declared, replayed)


def verify_layer_object(make, cell="rnn-tanh", layout="dlfs2", *, D=3, H=4, T=8, N=3, scale=None, seed=0,
                        lengths=(1, 2, 3), replay=None, save_to=None) -> Verification:
    """Verify a layer object (Deep Learning from Scratch 2's ``TimeRNN``/``TimeLSTM``/``TimeGRU``).

    ``make(Wx, Wh, b)`` builds the layer; it has ``forward(xs) -> hs``, ``backward(dhs) -> dxs``,
    its gradients in ``grads`` (in the order of ``params``), ``set_state(h)``, and ``dL/dh0`` in
    ``dh``. The other arguments are those of :func:`verify_layer`.

    Returns
    -------
    Verification
    """
    _check_sizes(D=D, H=H, T=T, N=N)
    replayed, D, H, _ = replay_sizes(replay, D, H, None)
    model = _model(cell, D, H, loss="upstream")
    L = layout_for(layout, cell)
    adapter = LayerObject(model, L, Signature((), ()), make)
    plan = Plan(T=T, N=N, scale=scale, seed=seed, lengths=lengths)
    zero = tuple(s for s in model.state_names if s != "h")
    declared = Declared(_meta("object", cell, L), lambda D, H: _model(cell, D, H, loss="upstream"), (make,), save_to,
                        cli=_cli_expressible(cell, layout, None))
    return run_declared(adapter, lambda: _layer_problems(model, plan, T, seed, zero), declared, replayed)


def verify_loss(fn, cell="rnn-tanh", layout="cs231n", *, D=3, H=4, K=3, T=8, N=3, loss="cross-entropy",
                reduction="sum", architecture="many-to-many", mask=False, scale=None, seed=0, signature=None,
                module=None, lengths=(1, 2, 3), truncation=None, clip=None, replay=None,
                save_to=None, search=0, num_layers=1, bidirectional=False, merge="concat",
                residual=False, zero_states=()) -> Verification:
    """Verify a loss function that returns the loss and its gradients for a batch.

    The model is declared: ``cell``, sizes, ``loss`` (``cross-entropy``, ``mse``), ``reduction``
    (``sum``, ``mean``, ``batch-mean``: sum over time and mean over the batch, ``token-mean``) and
    ``architecture``; ``mask=True`` draws padding masks (CS231n's ``mask``).  Parameters reach the
    function as its signature says: a dict, positional arguments, or the globals of ``module``
    (default: the function's own module when the signature passes no parameters).

    ``truncation=k`` (or ``(k1, k2)``) declares truncated BPTT (:mod:`symrnn.models.truncated`: the
    state crosses chunks, the gradient does not), verified exactly; the signature may pass
    ``k`` (or ``k1``, ``k2``) to the function.  ``clip=("value", 5.0)`` (or ``"norm"``,
    ``"global-norm"``) declares clipping of the parameter gradients after the backward.

    ``num_layers``, ``bidirectional``, ``merge`` and ``residual`` declare a stacked or
    bidirectional network (:class:`symrnn.StackedModel`); its loss function takes
    ``(params, x, h0[, c0], y)`` with PyTorch's ``state_dict`` names (``layout="pytorch"``) or
    symrnn's keys (``layout="symrnn"``), ``h0`` shaped as PyTorch's ``h_0``
    (:mod:`symrnn.verify.stack`); ``grads["x"]``, ``grads["h0"]``, ``grads["c0"]`` (or ``dx`` ...),
    when returned, are judged too.

    Returns
    -------
    Verification

    Examples
    --------
    A CS231n-style loss, ``loss(params, x, h0, y, mask) -> (loss, grads)``, with ``x`` of
    shape ``(N, T, D)`` and a softmax readout, summed over time and averaged over the batch:

    >>> import numpy as np, symrnn.verify as V
    >>> def rnn_loss(params, x, h0, y, mask):
    ...     Wx, Wh, b, Wv, bv = (params[k] for k in ("Wx", "Wh", "b", "W_vocab", "b_vocab"))
    ...     N, T, _ = x.shape
    ...     h, prev = np.zeros((N, T, len(b))), h0
    ...     for t in range(T):
    ...         prev = h[:, t] = np.tanh(x[:, t] @ Wx + prev @ Wh + b)
    ...     s = h @ Wv + bv
    ...     p = np.exp(s - s.max(axis=2, keepdims=True)); p /= p.sum(axis=2, keepdims=True)
    ...     n, k = np.indices((N, T))
    ...     loss = -(np.log(p[n, k, y]) * mask).sum() / N
    ...     ds = p.copy(); ds[n, k, y] -= 1; ds *= mask[..., None] / N
    ...     g = {"W_vocab": np.einsum("ntk,ntv->kv", h, ds), "b_vocab": ds.sum(axis=(0, 1)),
    ...          "Wx": 0, "Wh": 0, "b": 0}
    ...     dh, carry = ds @ Wv.T, np.zeros_like(h0)
    ...     for t in reversed(range(T)):
    ...         da = (dh[:, t] + carry) * (1 - h[:, t] ** 2)
    ...         g["Wx"] = g["Wx"] + x[:, t].T @ da
    ...         g["Wh"] = g["Wh"] + (h0 if t == 0 else h[:, t - 1]).T @ da
    ...         g["b"] = g["b"] + da.sum(axis=0)
    ...         carry = da @ Wh.T
    ...     return loss, g
    >>> result = V.verify_loss(rnn_loss, "rnn-tanh", "cs231n", reduction="batch-mean", mask=True)
    >>> result.ok, [c.T for c in result.cases]
    (True, [8, 1, 2, 3, 48])
    """
    pytorch_one_layer = signature is None and layout == "pytorch" and not has_signature(layout, "loss", cell)
    if num_layers != 1 or bidirectional or residual or pytorch_one_layer:  # nn.LSTM's names: a stack of one
        _refuse_in_stack(truncation=truncation, replay=replay, zero_states=zero_states or None, module=module)
        return _verify_stack_loss(fn, cell, layout, D=D, H=H, K=K, T=T, N=N, loss=loss, reduction=reduction,
                                  architecture=architecture, scale=scale, seed=seed, signature=signature,
                                  lengths=lengths, clip=clip, save_to=save_to, num_layers=num_layers,
                                  bidirectional=bidirectional, merge=merge, residual=residual, mask=mask,
                                  search=search)
    _check_sizes(D=D, H=H, K=K, T=T, N=N)
    replayed, D, H, K = replay_sizes(replay, D, H, K)
    layout_for(layout, cell)  # an unknown layout is refused as such, before its calling convention
    sig = _calling_convention(signature, layout, "loss", cell)
    one_hot = "x_ids" in sig.forward_args
    if one_hot:
        D, N = K, 1  # one sequence of one-hot inputs
    kwargs = dict(loss=loss, reduction=reduction, architecture=architecture)
    model = _model(cell, D, H, K, **kwargs)
    adapter = LossFunction(model, layout_for(layout, cell), sig, fn, module)
    _check_architecture(architecture)
    plan = Plan(T=T, N=N, scale=scale, seed=seed, lengths=lengths)
    zero = _zero_states(model, sig, zero_states)
    problems = _loss_problems(model, plan, seed, zero, _loss_targets(architecture, loss, K), one_hot,
                              mask and "mask" in sig.forward_args)
    declared = Declared(_meta("loss", cell, adapter.layout, K=K, **kwargs),
                        None if one_hot else lambda D, H: _model(cell, D, H, K, **kwargs),
                        (fn,), save_to, search=0 if one_hot else search, zero_states=zero,
                        cli=_cli_expressible(cell, layout, signature) and module is None,
                        notes=_unsearched(search, one_hot), masks=bool(mask and "mask" in sig.forward_args))
    return run_declared(adapter, lambda: problems, declared, replayed, truncation, clip)


def _check_architecture(architecture):
    if architecture not in ("many-to-many", "many-to-one"):
        raise UnknownNameError(f"verify_loss supports the architectures many-to-many and many-to-one, "
                               f"got {architecture!r}.")


def _loss_targets(architecture, loss, K):
    """``targets(rng, T, N)``: class ids (cross-entropy) or values, at every step or at the last one."""
    def targets(rng, T_in, N_):
        T_out = 1 if architecture == "many-to-one" else T_in
        if loss == "cross-entropy":
            return rng.integers(0, K, size=(T_out, N_))
        return rng.normal(size=(T_out, N_, K))
    return targets


def _loss_problems(model, plan, seed, zero, targets, one_hot=False, masks=False):
    """The main length and the shorter ones; one-hot inputs (class ids) and padding masks when the
    signature takes them."""
    problems = []
    for k, t in enumerate([plan.T] + _lengths(plan)):
        p = draw(model, plan, t, f"T={t}", seed + k, zero, loss_targets=targets)
        if one_hot:
            D = model.sizes["D"]
            p = replace(p, x=np.eye(D)[np.random.default_rng(seed + k).integers(0, D, size=(t, 1))])
        if masks:
            p = replace(p, mask=padding_mask(np.random.default_rng(seed + k), t, plan.N))
        problems.append(p)
    return problems + _long(plan, plan.T, lambda t, n: _loss_long(model, replace(plan, N=n), seed, zero, targets,
                                                                   one_hot, masks))


def _loss_long(model, plan, seed, zero, targets, one_hot, masks):
    """The long case of loss mode (:data:`LONG_T` steps), inputs and masks as the other cases'."""
    t, rng = LONG_T, np.random.default_rng(seed + 100)
    p = draw(model, plan, t, f"T={t}, N={plan.N} {LONG_MARK}", seed + 100, zero, loss_targets=targets)
    if one_hot:
        p = replace(p, x=np.eye(model.sizes["D"])[rng.integers(0, model.sizes["D"], size=(t, 1))])
    if masks:
        p = replace(p, mask=padding_mask(rng, t, plan.N))
    return p


def _unsearched(search, one_hot):
    """The note that ``search=`` was not run (drawn cases have no one-hot inputs)."""
    if not search or not one_hot:
        return []
    return [f"search={search} was not run: drawn cases have no one-hot inputs from class ids; only the fixed "
            f"cases ran"]


def _refuse_in_stack(**given):
    """What a stacked or bidirectional loss verification cannot run is refused, not ignored."""
    named = [k for k, v in given.items() if v is not None]
    if named:
        raise UnknownNameError(f"{', '.join(f'{k}=' for k in named)} cannot be used with num_layers > 1, "
                               f"bidirectional=True or residual=True (stacked loss mode); drop it.")


def _verify_stack_loss(fn, cell, layout, *, D, H, K, T, N, loss, reduction, architecture, scale, seed, signature,
                       lengths, clip, save_to, num_layers, bidirectional, merge, residual, mask=False, search=0):
    """verify_loss of a stacked or bidirectional network (:mod:`symrnn.verify.stack`)."""
    from .stack import StackLayout, StackLossFunction, draw_stack, stack_problems

    _check_sizes(D=D, H=H, K=K, T=T, N=N)
    _check_architecture(architecture)
    kwargs = dict(loss=loss, reduction=reduction, architecture=architecture)
    shape = dict(num_layers=num_layers, bidirectional=bidirectional, merge=merge, residual=residual)
    model = _stacked_model(cell, D, H, K, **shape, **kwargs)
    L = StackLayout(layout if layout != "cs231n" else "pytorch", model)
    states = tuple(f"{s}0" for s in model.state_names)
    sig = signature if isinstance(signature, Signature) else Signature(
        ("params", "x") + states + ("y",) + (("mask",) if mask else ()), ("loss", "grads"))
    if mask and "mask" not in sig.forward_args:
        raise UnknownNameError("mask=True: the signature takes no mask (add the role 'mask' where your loss takes "
                               "it), so padded cases cannot be run.")
    adapter = StackLossFunction(model, L, sig, fn)
    targets = adapter.targets = _loss_targets(architecture, loss, K)  # probes draw their own problems too
    adapter.strategy = stack_problems(targets)  # search=: drawn stacked problems
    plan = Plan(T=T, N=N, scale=scale, seed=seed, lengths=lengths)
    problems = [draw_stack(model, plan, t, f"T={t}", seed + k, targets) for k, t in enumerate([T] + _lengths(plan))]
    problems += _long(plan, T, lambda t, n: draw_stack(model, replace(plan, N=n), t, f"T={t}, N={n} {LONG_MARK}",
                                                        seed + 100, targets))
    if mask:  # padded sequences, the first one full, as in single-layer loss mode
        problems = [replace(p, mask=padding_mask(np.random.default_rng(seed + k), p.T, p.N))
                    for k, p in enumerate(problems)]
    declared = Declared(_meta("loss", cell, L, K=K, **kwargs, **shape), None, (fn,), save_to, cli=False,
                        search=search, masks=bool(mask))
    return run_declared(adapter, lambda: problems, declared, None, None, clip)


def _stacked_model(cell, D, H, K, **options):
    """A :class:`~symrnn.models.wiring.StackedModel` per configuration (built-in cells once per process)."""
    from ..models.wiring import StackedModel

    key = ("stack", _cell_name(cell), D, H, K, *options.values())
    if key not in _MODELS or not isinstance(cell, str):
        _MODELS[key] = StackedModel(builtin_cell(cell) if isinstance(cell, str) else cell, D=D, H=H, K=K, **options)
    return _MODELS[key]


def _cli_expressible(cell, layout, signature):
    return isinstance(cell, str) and (isinstance(layout, str) or is_native(layout)) and \
        (signature is None or isinstance(signature, str))


def _meta(mode, cell, layout, **more):
    return dict(mode=mode, cell=_cell_name(cell), layout=layout.name, **more)


