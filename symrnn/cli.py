"""The ``symrnn`` command.

    symrnn derive MODEL [--architecture A] [--loss L] [--format tex|pdf|md] [--exercises] -o PATH
                  [--no-sensitivities]
    symrnn derive ENCODER_CELL [--decoder CELL] [--attention dot|general|additive] [--attention-style S]
                  [--bridge B] [--context] -o PATH          (a sequence-to-sequence report)
    symrnn derive-all --out DIR
    symrnn check MODEL          agreement table of the generated gradients against the oracles
    symrnn cells                the built-in cells, architectures and losses
    symrnn verify FILE.py:FUNCTION --cell C --layout L --mode layer|step|loss|object [--json OUT]
                                judge hand-written backprop code (exit 0 right, 1 wrong, 2 usage, 3-5 see --help)
    symrnn decay --cells rnn-tanh,lstm,gru --scales 0.5,1,2 --T 1000 --out reports/decay
                                vanishing and exploding gradients: norms, Lyapunov spectra, bounds, report
    symrnn demo --out DIR       the main job of `make demo`

MODEL is a built-in cell name (``symrnn cells`` lists them) or
``path/to/file.py:function`` / ``package.module:function`` naming a function
that returns a :class:`symrnn.Cell`.
"""
from __future__ import annotations

import argparse
import contextlib
import os
import shlex
import sys
import traceback
from pathlib import Path

from . import __version__
from .models.architectures import ARCHITECTURES
from .engine.cells import BUILTIN_CELLS, PAPERS
from .errors import SymRNNError, UnknownNameError
from .fileio import check_output_dir
from .userfiles import attribute, load_cell, load_function
from .models.layouts import LAYOUTS
from .engine.losses import LOSSES, REDUCTIONS


def _model_arguments(parser):
    parser.add_argument("model", help="built-in cell name or file.py:function returning a Cell")
    parser.add_argument("--architecture", default="many-to-many", choices=sorted(ARCHITECTURES))
    parser.add_argument("--loss", default="cross-entropy", choices=sorted(LOSSES))
    parser.add_argument("--reduction", default="sum", choices=REDUCTIONS)
    parser.add_argument("--num-layers", type=int, default=1, help="stacked layers (a StackedModel when > 1)")
    parser.add_argument("--bidirectional", action="store_true", help="bidirectional layers (a StackedModel)")
    parser.add_argument("--merge", default=None,
                        help="merge of a bidirectional layer: concat (default), sum, ave, mul, max")
    parser.add_argument("--residual", action="store_true", help="residual links between layers of equal width")
    group = parser.add_argument_group("sequence to sequence (MODEL is the encoder's cell; any of these makes a "
                                      "symrnn.Seq2Seq)")
    group.add_argument("--decoder", default=None, help="the decoder's cell (default: the encoder's)")
    group.add_argument("--attention", default=None, choices=("dot", "general", "additive"),
                       help="the attention score (Luong's dot and general, Bahdanau's additive)")
    group.add_argument("--attention-style", default=None, choices=("luong", "bahdanau"),
                       help="luong: the query is h_t and a combination feeds the readout; bahdanau: the query "
                            "is h_{t-1} and the context enters the step (default luong)")
    group.add_argument("--bridge", default=None, choices=("copy", "linear", "tanh", "none"),
                       help="how the encoder's final state starts the decoder (default: copy when sizes allow)")
    group.add_argument("--context", action="store_true",
                       help="feed the encoder's summary into every decoder step and the readout (Cho et al. 2014)")


SEQ2SEQ_OPTIONS = ("decoder", "attention", "attention_style", "bridge", "context")


def _build_seq2seq(args, D, H, K):
    from .models.seq2seq import Seq2Seq

    if args.architecture != "many-to-many" or args.loss != "cross-entropy":
        raise UnknownNameError("A sequence-to-sequence model scores every target token with the cross-entropy: "
                               "leave out --architecture and --loss with --decoder/--attention/--bridge/--context.")
    return Seq2Seq(load_cell(args.model), load_cell(args.decoder) if args.decoder else None, src_vocab=K + 2,
                   tgt_vocab=K, E=D, H=H, num_layers=args.num_layers, bidirectional=args.bidirectional,
                   merge=args.merge or "concat", residual=args.residual, bridge=args.bridge, context=args.context,
                   attention=args.attention, attention_style=args.attention_style or "luong",
                   reduction=args.reduction)


def _wants_seq2seq(args) -> bool:
    return any(getattr(args, name, None) not in (None, False) for name in SEQ2SEQ_OPTIONS)


def build_model(args, D=3, H=4, K=3):
    from .models.model import Model

    if _wants_seq2seq(args):
        if getattr(args, "attention_style", None) is not None and getattr(args, "attention", None) is None:
            raise UnknownNameError("--attention-style needs --attention (dot, general or additive).")
        return _build_seq2seq(args, D, H, K)

    if getattr(args, "merge", None) is not None and not getattr(args, "bidirectional", False):
        raise UnknownNameError(f"--merge {args.merge} merges the two directions of a bidirectional layer; "
                               "add --bidirectional, or leave out --merge.")
    if getattr(args, "num_layers", 1) != 1 or getattr(args, "bidirectional", False):
        from .models.wiring import StackedModel

        return StackedModel(load_cell(args.model), D=D, H=H, K=K, num_layers=args.num_layers,
                            bidirectional=args.bidirectional, merge=args.merge or "concat", residual=args.residual,
                            architecture=args.architecture, loss=args.loss, reduction=args.reduction)
    return Model(load_cell(args.model), D=D, H=H, K=K, architecture=args.architecture,
                 loss=args.loss, reduction=args.reduction)


def main(argv=None) -> int:
    parser, commands = _parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown:  # said by the command's own parser, with its usage (not the top-level one)
        commands.get(args.command, parser).error(f"unrecognized arguments: {' '.join(unknown)}")
    try:
        return _run(args, parser)
    except SymRNNError as exc:
        print(f"symrnn: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `symrnn verify ... | head`: the reader stopped early
        sys.stderr.close()
        return 0
    except Exception:  # noqa: BLE001 - a bug of symrnn's: its own status, never "a gradient is wrong" (1)
        traceback.print_exc()
        print(f"symrnn: internal error (a bug in symrnn, not a verdict on your code): please report it with the "
              f"command line and the traceback above. Exit status {EXIT_INTERNAL}.", file=sys.stderr)
        return EXIT_INTERNAL



def _parser():
    """The top-level parser and ``{command: its parser}``."""
    parser = argparse.ArgumentParser(prog="symrnn", description="Exact symbolic BPTT gradients of recurrent networks.")
    parser.add_argument("--version", action="version", version=f"symrnn {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    p = sub.add_parser("derive", help="write the derivation report of a model (tex, pdf or md)")
    _model_arguments(p)
    p.add_argument("--format", choices=("tex", "pdf", "md"),
                   help="default: from the extension of -o (.tex, .pdf, .md), else tex")
    p.add_argument("-o", "--output", help="the file to write (default: the document on standard output; pdf "
                                           "needs a file)")
    p.add_argument("--exercises", action="store_true",
                   help="the exercise version for teachers: the adjoints, gradients and the worked example's "
                        "backward pass left blank; with -o FILE the answers go to FILE-answers (a separate "
                        "file), on standard output they follow at the end")
    p.add_argument("--no-sensitivities", dest="sensitivities", action="store_false",
                   help="leave out the section on the sensitivity recurrence (real-time recurrent learning) "
                        "printed beside the adjoint recurrences")
    p = sub.add_parser("derive-all", help="write the .tex and .md derivations of every built-in cell")
    p.add_argument("--out", default="derivations")
    p = sub.add_parser("check", help="agreement table of the generated gradients against every oracle")
    _model_arguments(p)
    p.add_argument("--seed", type=int, default=0)
    sub.add_parser("cells", help="list the built-in cells, architectures and losses")
    _verify_arguments(sub)
    _decay_arguments(sub.add_parser(
        "decay", help="gradient decay: norms against lag, Lyapunov spectra, Pascanu bound; writes a report folder"))
    p = sub.add_parser("demo", help="the main job of `make demo`")
    p.add_argument("--out", default="reports")
    return parser, sub.choices


#: what ``symrnn verify`` exits with (its --help epilog; the verify guide has the same table)
VERIFY_EXIT_CODES = ("exit codes:\n  0  the gradients are right\n"
                     "  1  some gradient is wrong (the report says which, where, and how), also on one of\n"
                     "     two calls on the same inputs (NONDETERMINISTIC)\n"
                     "  2  usage error (a bad option, a missing file or function), or a forward that runs on\n"
                     "     arrays in no layout symrnn knows (declare --cell and --layout)\n"
                     "  3  the code under test failed: it raised, exited, or returned the wrong things\n"
                     "  4  the forward differs from the cell it was verified against\n"
                     "  5  symrnn itself failed (an internal error: a bug to report, no verdict)")


def _verify_arguments(sub):
    p = sub.add_parser(
        "verify", help="verify hand-written backprop code against the exact gradients",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Verify hand-written backprop code against symrnn's exact gradients.\n\n"
                    "FILE.py is imported as a module: its top-level code runs (guard scripts with\n"
                    "if __name__ == '__main__':). exit(), sys.exit() and os._exit() in it, or in the\n"
                    "functions under test, do not end the verification: they are reported.",
        epilog=VERIFY_EXIT_CODES)
    _verify_options(p)


def _verify_options(p):
    p.add_argument("target", help="file.py:function or package.module:function (the backward in layer and "
                                  "step mode, the loss function in loss mode, the layer class in object mode)")
    p.add_argument("--cell", default=None,
                   help="built-in cell name (symrnn cells lists them); in layer mode, left out: found from the "
                        "forward (a built-in cell in any known layout, else traced from the code); in the other "
                        "modes rnn-tanh")
    p.add_argument("--layout", default=None,
                   help="cs231n, dlfs2, minchar (or min-char-rnn), pytorch, keras, or symrnn (symrnn's own names: "
                        "forward(x, h0 or s0, params) -> (h[, states], cache), backward(dh, cache) -> (dx, dh0 or "
                        "ds0, grads), time-major; with --cell, found from the argument names); in layer mode, left "
                        "out: found from the forward; in the other modes cs231n")
    p.add_argument("--mode", default="layer", choices=("layer", "step", "loss", "object"))
    p.add_argument("--dtype", default=None, choices=("float64", "float32", "float16", "bfloat16"),
                   help="PyTorch or JAX code (an autograd.Function, custom operator, nn.Module or custom_vjp "
                        "target): the dtype it runs in (default float64, a module's own)")
    p.add_argument("--heads", type=int, default=None,
                   help="PyTorch or JAX code whose states are split into K heads, (N, K, H/K)")
    p.add_argument("--forward", help="the forward's name (default: the backward's name with 'forward')")
    p.add_argument("--sizes", default="", help="e.g. D=3,H=4,K=5,N=2")
    p.add_argument("--T", type=int, default=8, help="sequence length of the main case")
    p.add_argument("--loss", default="cross-entropy", choices=sorted(LOSSES))
    p.add_argument("--reduction", default="sum", choices=REDUCTIONS)
    p.add_argument("--architecture", default="many-to-many", choices=sorted(ARCHITECTURES))
    p.add_argument("--mask", action="store_true", help="loss mode: draw padding masks")
    p.add_argument("--num-layers", type=int, default=1, help="loss mode: a stack of this many layers (PyTorch's "
                                                              "names weight_ih_l0 ...)")
    p.add_argument("--bidirectional", action="store_true", help="loss mode: bidirectional layers")
    p.add_argument("--merge", default="concat", help="loss mode, --bidirectional: how the two directions merge "
                                                      "(concat, sum, ...)")
    p.add_argument("--residual", action="store_true", help="loss mode: residual connections between layers")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", help="also write the result as JSON to this file")
    p.add_argument("--truncation", help="declared truncated BPTT: K (chunks of K) or K1,K2")
    p.add_argument("--clip", help="declared gradient clipping: value=C, norm=C or global-norm=C (PyTorch's "
                                  "clip_grad_norm_ or c / norm, as the code does; global-norm=C,EPS declares "
                                  "c / (norm + EPS)); value=C,states clips dh0 too")
    p.add_argument("--replay", help="run a saved minimal case (.npz) again; its report printed this option")
    p.add_argument("--search", type=int, default=0, help="also try N cases drawn by Hypothesis (layer, loss modes)")
    p.add_argument("--save-to", help="where to save the smallest failing case (default: a temporary file)")
    p.add_argument("--show-code", action="store_true",
                   help="also print the lines of symrnn's generated backward that a named mistake differs from")
    p.add_argument("--no-cache", action="store_true",
                   help="neither read nor write the on-disk cache of generated code (symrnn.cache: "
                        "$SYMRNN_CACHE_DIR, else ~/.cache/symrnn); everything is derived in this process")


def _run(args, parser) -> int:
    if args.command == "cells":
        print("cells:         " + ", ".join(BUILTIN_CELLS))
        print("architectures: " + ", ".join(f"{k} ({a.description})" for k, a in ARCHITECTURES.items()))
        print("losses:        " + ", ".join(LOSSES))
        print("papers:")
        for name, paper in PAPERS.items():
            print(f"  {name:<13}{paper}")
        return 0
    if args.command == "derive":
        return _derive(args)
    if args.command == "derive-all":
        from .report import write_all

        check_output_dir(args.out, probe="README.md")  # a folder that cannot be written fails before the work
        for path in write_all(args.out, progress=lambda stem: print(f"deriving {stem} ...", file=sys.stderr,
                                                                     flush=True)):
            print(f"wrote {path}")
        return 0
    if args.command == "check":  # the agreement table of the model the options describe (a Seq2Seq's own)
        from .checks import agreement_table
        from .oracles.seq2seq import seq2seq_agreement_table

        table = seq2seq_agreement_table if _wants_seq2seq(args) else agreement_table
        print(table(build_model(args), seed=args.seed))
        return 0
    if args.command == "verify":
        return _verify(args)
    if args.command == "demo":
        from .demo import run

        check_output_dir(Path(args.out) / "demo", probe="agreement.md")
        check_output_dir(Path(args.out) / "decay")
        return run(args.out)
    if args.command == "decay":
        return _decay(args)
    parser.print_help()
    return 0


def _derive(args) -> int:
    from .report import write_report

    suffix = Path(args.output).suffix.lstrip(".").lower() if args.output else ""
    if args.format is None:
        args.format = suffix if suffix in ("tex", "pdf", "md") else "tex"
    elif suffix in ("tex", "pdf", "md") and suffix != args.format:
        raise UnknownNameError(f"--format {args.format} but -o {args.output!r} ends in .{suffix}; "
                               f"give one or the other, or make them agree.")

    if args.output is None:
        from .report import document_text

        if args.format == "pdf":
            raise UnknownNameError("--format pdf writes a file: give -o FILE.pdf.")
        print(document_text(build_model(args), args.format, args.exercises, args.sensitivities), end="")
        return 0
    from .fileio import check_writable

    check_writable(args.output)  # a folder that cannot be written fails before the derivation
    model = build_model(args)
    print(f"deriving the report of {model!r} (large cells take a minute) ...", file=sys.stderr, flush=True)
    path = write_report(model, args.format, args.output, args.exercises, args.sensitivities)
    print(f"wrote {path}")
    if args.exercises:
        from .report import answers_path

        print(f"wrote {answers_path(path)} (the answers)")
    return 0


def _decay_arguments(p):
    p.add_argument("--cells", default="rnn-tanh,lstm,gru",
                   help="comma-separated built-in cells or file.py:function (default rnn-tanh,lstm,gru)")
    p.add_argument("--scales", default="0.5,1,2", help="comma-separated weight scales >= 0 (default 0.5,1,2)")
    p.add_argument("--scale-by", default="gain", choices=("gain", "radius", "sigma"),
                   help="what a scale sets for each recurrent matrix: multiply the draw (gain), its spectral "
                        "radius, or its largest singular value (sigma)")
    p.add_argument("--init", default="pytorch", choices=("pytorch", "xavier", "orthogonal", "identity", "normal",
                                                        "paper"),
                   help="initialisation scheme of every parameter (default pytorch; paper: the LRU's ring and "
                        "S6's A and dt as their papers set them)")
    p.add_argument("--H", type=int, default=16, help="hidden size (default 16)")
    p.add_argument("--D", type=int, default=4, help="input size (default 4)")
    p.add_argument("--T", type=int, default=1000, help="steps (default 1000; 100000 is fine)")
    p.add_argument("--k", type=int, default=None, help="Lyapunov exponents per run (default: the whole state)")
    p.add_argument("--seeds", type=int, default=3, help="seeds 0 .. N-1 per cell and scale (default 3)")
    p.add_argument("--forget-bias", type=float, default=None,
                   help="set the LSTM's forget-gate bias b_f to this value (e.g. 1, Keras' unit_forget_bias); other "
                        "cells keep their draw")
    p.add_argument("--inputs", default="random", choices=("random", "zero"))
    p.add_argument("--input-scale", type=float, default=1.0, help="standard deviation of random inputs")
    p.add_argument("--grad-T", type=int, default=50, help="sequence length of the dL/dW-by-lag analysis (0: off)")
    p.add_argument("--workers", type=int, default=None, help="processes (default: every core)")
    p.add_argument("--weights", help="trained weights of ONE cell: a .pt/.pth state dict or .npz")
    p.add_argument("--layout", default="pytorch", choices=("pytorch", "keras", "symrnn"),
                   help="layout of --weights (default pytorch)")
    p.add_argument("--out", default="reports/decay", help="report folder (default reports/decay)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def _decay(args) -> int:
    from .decay.report import write_report
    from .decay.sweep import sweep

    try:
        scales = [float(x) for x in args.scales.split(",") if x.strip()]
    except ValueError:
        raise UnknownNameError(f"--scales {args.scales!r}: give comma-separated numbers, e.g. 0.5,1,2.") from None
    cells = [c.strip() for c in args.cells.split(",") if c.strip()]
    cells = [c if c in BUILTIN_CELLS else load_cell(c) for c in cells]
    check_output_dir(args.out)  # before the sweep: a folder that cannot be written fails at once
    if args.seeds < 1:
        raise UnknownNameError(f"--seeds {args.seeds}: give the number of seeds, at least 1.")
    common = dict(T=args.T, k=args.k, inputs=args.inputs, input_scale=args.input_scale, grad_T=args.grad_T,
                  max_workers=args.workers, progress=not args.no_progress, seeds=range(args.seeds))
    if args.weights:
        from .decay.weights import load_params
        from .decay.sweep import model_for
        from .decay.weights import sizes_of

        if len(cells) != 1:
            raise UnknownNameError(f"--weights belongs to one cell; got --cells {args.cells!r}.")
        raw = _raw_weights(args.weights)
        D, H = sizes_of(cells[0] if isinstance(cells[0], str) else cells[0].name, raw, args.layout) \
            if args.layout != "symrnn" else (args.D, args.H)
        params = load_params(model_for(cells[0], D, H), raw, args.layout)
        result = sweep(cells, [1.0], H=H, D=D, init="trained", params=params, **common)
    else:
        result = sweep(cells, scales, H=args.H, D=args.D, init=args.init, scale_by=args.scale_by,
                       forget_bias=args.forget_bias, **common)
    paths = write_report(result, args.out)
    from .decay.report import rates_table

    for r in rates_table(result):
        print(f"{r['cell']:>24s}  scale {r['scale']:<6g} lambda_1 = {r['top_exponent_mean']:+.4f} "
              f"(natural log per step, {r['regime']})")
    print(f"decay report: {paths['markdown']}")
    return 0


def _raw_weights(path):
    from .decay.weights import read_weights

    if not Path(path).is_file():
        raise UnknownNameError(f"--weights {path!r}: no such file.")
    if Path(path).suffix not in (".npz", ".pt", ".pth"):
        raise UnknownNameError(f"--weights {path!r}: expected a .npz, .pt or .pth file.")
    return read_weights(path)


#: exit codes of ``symrnn verify`` (``symrnn verify --help`` lists them)
EXIT_RIGHT, EXIT_WRONG, EXIT_USAGE, EXIT_USER_CODE, EXIT_FORWARD, EXIT_INTERNAL = 0, 1, 2, 3, 4, 5


def _verify(args) -> int:
    from .errors import UserCodeError

    from .verify.trace import TracingError

    from . import cache

    try:
        with cache.disabled() if args.no_cache else contextlib.nullcontext():
            return _verify_run(args)
    except TracingError as exc:
        print(f"symrnn verify: {exc}", file=sys.stderr)
        return EXIT_FORWARD
    except UserCodeError as exc:
        print(f"symrnn verify: the code under test failed: {exc}", file=sys.stderr)
        return EXIT_USER_CODE


def _verify_run(args) -> int:
    truncation, clip = _verify_usage(args)
    module, function = load_function(args.target)
    args.cell_typed = args.cell  # as typed (a file.py:function cell is loaded below), for a replay line
    if args.cell is not None and ":" in args.cell:  # a user's cell, file.py:function returning a Cell
        args.cell = load_cell(args.cell)
    elif args.cell is not None and args.cell not in BUILTIN_CELLS:
        load_cell(args.cell)  # an alias is accepted; a misspelt name is a usage error that lists the cells
    from .verify.options import option_sizes

    sizes = option_sizes(args.sizes)
    common = dict(D=sizes.get("D", 3), H=sizes.get("H", 4), N=sizes.get("N", 3), seed=args.seed)
    if args.replay:
        common["replay"] = _declared_by_replay(args)
    if args.save_to:
        from .fileio import check_writable

        check_writable(args.save_to)
        common["save_to"] = args.save_to
    result = _verify_mode(args, module, function, sizes, dict(truncation=truncation, clip=clip, search=args.search),
                          common)
    if args.json:
        result.to_json(args.json)
    _print_report(result, args.show_code)
    return EXIT_RIGHT if result.ok else EXIT_FORWARD if not result.forward.ok else EXIT_WRONG


def _verify_usage(args):
    """The usage errors found before any work (a bad path, option or combination); the declared
    truncation and clipping."""
    if args.json:
        from .fileio import check_writable

        check_writable(args.json)  # before any work: a bad path is a usage error
    from .verify.options import option_clip, option_truncation

    truncation, clip = option_truncation(args.truncation), option_clip(args.clip)  # usage errors first
    for option in ("search", "seed"):
        if getattr(args, option) < 0:
            raise UnknownNameError(f"--{option} {getattr(args, option)}: give a number >= 0.")
    if args.search and args.mode not in ("layer", "loss"):
        raise UnknownNameError(f"--search works in layer and loss mode, not in {args.mode} mode.")
    if args.replay and (args.truncation or args.clip):
        raise UnknownNameError("--replay runs the case as it was saved, truncation and clipping included; drop "
                               "--truncation/--clip (or verify anew without --replay).")
    return truncation, clip


def _declared_by_replay(args):
    """The model declared by the saved case ``--replay`` names (its loss, reduction, architecture,
    and its cell and layout when they were declared); the path."""
    from .verify.shrink import load_case

    meta = load_case(args.replay)[0]
    for key in ("loss", "reduction", "architecture"):
        setattr(args, key, meta.get(key, getattr(args, key)))
    if args.cell is None and meta.get("cell") in BUILTIN_CELLS and meta.get("layout") in LAYOUTS:
        args.cell, args.layout = meta["cell"], args.layout or meta["layout"]  # saved by a declared verification
    return args.replay


def _verify_mode(args, module, function, sizes, declared, common):
    """The verification of ``--mode``'s calling style."""
    from . import verify as V
    from .verify.frameworks import framework_of

    if args.dtype is not None:
        _refuse_dtype(args, function)
    if args.heads is not None and (args.mode != "layer" or framework_of(function) is None):
        raise UnknownNameError(f"--heads applies to PyTorch or JAX code in layer mode; {args.target!r} is not.")
    stacked = dict(num_layers=args.num_layers, bidirectional=args.bidirectional, merge=args.merge,
                   residual=args.residual)
    if args.mode != "loss" and stacked != dict(num_layers=1, bidirectional=False, merge="concat", residual=False):
        raise UnknownNameError("--num-layers, --bidirectional, --merge and --residual apply in loss mode "
                               "(--mode loss); in layer and step mode the code is one layer.")
    if args.mode == "object":
        return V.verify_layer_object(function, args.cell or "rnn-tanh", args.layout or "dlfs2", T=args.T, **common)
    if args.mode == "loss":
        return V.verify_loss(function, args.cell or "rnn-tanh", args.layout or "cs231n", K=sizes.get("K", 3),
                             T=args.T, loss=args.loss, reduction=args.reduction, architecture=args.architecture,
                             mask=args.mask, **stacked, **declared, **common)
    if framework_of(function) is not None:  # PyTorch or JAX code: symrnn.verify.frameworks
        return V.verify_framework(function, args.cell, args.layout, dtype=args.dtype, heads=args.heads, T=args.T,
                                  **declared, **common, replay_command=_framework_replay_command(args))
    forward = _forward_of(args, module, function)
    if args.mode == "step":
        cell = args.cell if args.cell is not None or args.layout is not None else None  # None: found
        return V.verify_step(forward, function, cell or "rnn-tanh", args.layout or "cs231n", **common) \
            if cell is not None else V.verify_step(forward, function, None, None, **common)
    builtin = args.cell is None or isinstance(args.cell, str)  # no --layout: found from the forward
    # a user's cell without --layout: verify_layer reads symrnn's names from a forward taking params, else CS231n's
    layout = args.layout or ("auto" if builtin and args.cell is not None else None)
    if isinstance(args.cell, str) and args.layout and not _layer_convention(args.layout, args.cell):
        layout = "auto"  # a preset of weights only (pytorch, keras): the calling convention is found from the code
    found = args.cell is None or layout == "auto"
    return V.verify_layer(forward, function, args.cell, layout, T=args.T, **declared, **common,
                          replay_command=_replay_command(args) if found else None)


def _layer_convention(layout, cell):
    """Whether the preset ``layout`` says how layer code of ``cell`` is called (cs231n, dlfs2 do;
    pytorch and keras name weights only)."""
    from .verify.signatures import has_signature

    return layout not in LAYOUTS or has_signature(layout, "layer", cell)


def _refuse_dtype(args, function):
    """``--dtype`` chooses the dtype PyTorch or JAX code runs in; NumPy code runs in the dtype its own
    arrays have, so the option is refused there rather than ignored."""
    from .verify.frameworks import framework_of

    if args.mode != "layer" or framework_of(function) is None:
        raise UnknownNameError(
            f"--dtype {args.dtype} applies to PyTorch or JAX code verified in layer mode; "
            f"{args.target!r} is NumPy code{'' if args.mode == 'layer' else f' in {args.mode} mode'}, which "
            "runs in the dtype of its own arrays (float32 code is judged with float32's error model). "
            "Drop --dtype, or cast inside your code.")


def _replay_command(args):
    """``path -> command``: a case found from the forward is replayed by the command line that was
    typed, which finds the cell again."""
    from .verify.replay import shown_path

    def command(path):
        words = ["symrnn", "verify", args.target] + (["--forward", args.forward] if args.forward else []) \
            + (["--cell", args.cell] if isinstance(args.cell, str) else []) + ["--replay", shown_path(path)]
        return " ".join(shlex.quote(str(w)) for w in words)
    return command


def _framework_replay_command(args):
    """``path -> command``: the command line that was typed (its cell, layout, dtype and heads), which
    runs the saved case of PyTorch or JAX code again."""
    from .verify.replay import shown_path

    declared = [("--cell", args.cell_typed), ("--layout", args.layout), ("--dtype", args.dtype),
                ("--heads", args.heads)]

    def command(path):
        words = ["symrnn", "verify", args.target] + [w for option, value in declared if isinstance(value, (str, int))
                                                     for w in (option, str(value))] + ["--replay", shown_path(path)]
        return " ".join(shlex.quote(w) for w in words)
    return command


def _forward_of(args, module, function):
    """The forward beside the backward: ``--forward`` or the backward's name with 'forward'."""
    from .verify.signatures import forward_name

    name = args.forward or forward_name(args.target.rpartition(':')[2])  # the name typed, not __name__
    forward = attribute(module, name) if name else None
    if forward is None:
        looked = f"looked for {name!r}" if name else "its name does not end in 'backward'"
        raise UnknownNameError(f"No forward for {function.__name__!r} in {args.target.rpartition(':')[0]!r}"
                               f" ({looked}); name it with --forward NAME.")
    return forward


def _print_report(result, show_code):
    try:
        print(result.report(show_code=show_code), flush=True)
    except BrokenPipeError:  # `symrnn verify ... | head`: the reader stopped early; the verdict still counts
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    except OSError as exc:  # stdout cannot be written (a full disk): say so, keep the verdict's code
        print(f"symrnn verify: the report could not be written to standard output: {exc}; verdict: "
              f"{result.verdict()}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
