"""A decay report folder: figures, CSV and JSON tables, and a Markdown summary.

Files (every one written atomically):

``summary.md``            settings, the rate table, the figures, what each number means
``norms_vs_lag.png``      log-norm against lag, a panel per cell, a line per scale, the bound dashed
``spectrum.png``          the Lyapunov exponents
``rate_map.png``          the top exponent over cell and scale, its measured sign change and the Pascanu scale marked
``paths.png``             gated cells: whole state, blocks, direct paths (``prod f``, ``prod z``)
``gradient_by_lag.png``   the share of each gate's ``dL/dW`` from each lag
``rates.csv``             per cell and scale: top exponent (mean, std, min, max over seeds), accuracy, bound, Pascanu scale
``norms.csv``             per run and lag: ``ln`` norms (spectral, Frobenius, ``dL/ds``, bound, blocks, paths)
``spectrum.csv``          per run: every exponent
``gradient_by_lag.csv``   per run, gate and lag: ``||G_t||_F`` and its share
``summary.json``          settings, rates and every run's full profile
"""
from __future__ import annotations

import csv
import io
import json
import math
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from ..errors import ParameterError
from ..fileio import check_output_dir, write_atomic
from . import plots
from .sweep import SweepResult

#: every file a report folder holds
REPORT_FILES = ("summary.md", "norms_vs_lag.png", "spectrum.png", "rate_map.png", "paths.png", "gradient_by_lag.png",
                "rates.csv", "norms.csv", "spectrum.csv", "gradient_by_lag.csv", "summary.json")


def _csv(path, header, rows):
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    for r in rows:
        w.writerow([_fmt(v) for v in r])
    write_atomic(path, buf.getvalue())
    return path


def _fmt(v):
    if isinstance(v, (float, np.floating)):
        return repr(float(v)) if np.isfinite(v) else ("-inf" if v < 0 else ("inf" if v > 0 else "nan"))
    return v


def _json_safe(obj):
    if isinstance(obj, dict):
        return {str(k): _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    if isinstance(obj, (np.floating, float)):
        f = float(obj)
        return f if math.isfinite(f) else ("-inf" if f < 0 else ("inf" if f > 0 else "nan"))
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.ndarray):
        return _json_safe(obj.tolist())
    return obj


def regime_of(tops, overflowed=False) -> str:
    """The regime the top exponents of one cell and scale show, by sign only when every seed agrees.

    ``vanishing`` (every seed's ``lambda_1 < 0``), ``exploding`` (every one ``> 0``, or the forward
    overflowed), ``neutral`` (every one exactly 0), ``neither`` (the seeds straddle zero: the
    measurement cannot say), ``-`` (no exponent)."""
    known = np.asarray([t for t in tops if not np.isnan(t)], dtype=np.float64)
    if overflowed:
        return "exploding (the forward overflowed)"
    if not known.size:
        return "-"
    if known.max() < 0:
        return "vanishing"
    if known.min() > 0:
        return "exploding"
    if known.min() == known.max() == 0:
        return "neutral"
    return "neither (seeds differ in sign)"


def rates_table(result) -> list:
    """One row per (cell, scale): the top exponent over seeds, its accuracy, the bound's rate, the scale
    where the bound's ``gamma sigma_max(W) = 1``, the regime."""
    rows = []
    groups = plots.by_cell_scale(result)
    for (cell, scale), runs in groups.items():
        tops = np.array([r[1].top_exponent if r[1].exponents is not None else np.nan for r in runs])
        slopes = []
        for _, p, _ in runs:
            if p.log_spectral is None or len(p.lags) < 2:
                continue
            if p.log_spectral[-1] == -np.inf:  # the product became exactly zero: faster than any finite rate
                slopes.append(-np.inf)
            elif np.isfinite(p.log_spectral[-1]):
                half = len(p.lags) // 2
                slopes.append((p.log_spectral[-1] - p.log_spectral[half]) / max(p.lags[-1] - p.lags[half], 1))
        first = runs[0][1]
        gammas = [r[1].gamma for r in runs if r[1].gamma is not None]
        sig = [r[1].sigma_max for r in runs if r[1].sigma_max is not None]
        crit = None
        if gammas and scale > 0:
            crit = float(np.mean([scale / (g * s) if g * s > 0 else np.inf for g, s in zip(gammas, sig)]))
        # -inf is a result: the gradient became exactly zero (a relu cell whose units all died)
        known = tops[~np.isnan(tops)]
        top = float(np.mean(known)) if known.size else float("nan")
        if known.size > 1 and np.isfinite(known).all():
            spread = float(np.std(known))
        else:
            spread = 0.0 if known.size and (known == known[0]).all() else float("nan")
        errors = [r[1].accuracy["sum_identity_error"] for r in runs
                  if r[1].accuracy and r[1].accuracy.get("sum_identity_error") is not None]
        overflows = [r[1].overflow["step"] for r in runs if r[1].overflow]
        rows.append(dict(
            cell=cell, scale=float(scale), seeds=len(runs), state_size=first.state_size,
            top_exponent_mean=top,
            top_exponent_std=spread,
            top_exponent_min=float(np.min(known)) if known.size else float("nan"),
            top_exponent_max=float(np.max(known)) if known.size else float("nan"),
            sum_identity_error=float(max(errors)) if errors else None,
            norm_slope=float(np.mean(slopes)) if slopes else float("nan"),
            steps_per_e_fold=(1.0 / abs(top) if np.isfinite(top) and top != 0
                              else 0.0 if top == -np.inf else float("inf")),
            gamma=float(np.mean(gammas)) if gammas else None,
            sigma_max=float(np.mean(sig)) if sig else None,
            bound_rate=float(np.mean([r[1].bound_rate for r in runs])) if gammas else None,
            pascanu_scale=crit,
            overflow_steps=overflows or None,
            zero_jacobian=bool(first.meta.get("zero_jacobian", False)),
            regime=regime_of(tops, bool(overflows)),
        ))
    return rows


def sign_changes(rates) -> dict:
    """``{cell: [scale, ...]}``: where the mean top exponent changes sign between two neighbouring
    scales, interpolated linearly in the scale (the measured transition, not a bound)."""
    out = {}
    for cell in dict.fromkeys(r["cell"] for r in rates):
        pts = sorted((r["scale"], r["top_exponent_mean"]) for r in rates if r["cell"] == cell
                     and np.isfinite(r["top_exponent_mean"]))
        found = []
        for (s0, a), (s1, b) in zip(pts, pts[1:]):
            if a == 0:
                found.append(s0)
            elif a * b < 0:
                found.append(float(s0 + (s1 - s0) * a / (a - b)))
        if pts and pts[-1][1] == 0 and (not found or found[-1] != pts[-1][0]):
            found.append(pts[-1][0])
        out[cell] = found
    return out


def write_report(result, out, title="Gradient decay") -> dict:
    """Write the report folder ``out`` (created) of a sweep.

    Parameters
    ----------
    result : SweepResult
    out : str or path
        The folder; created if needed.
    title : str
        The title of ``summary.md``.

    The files are written into a fresh hidden folder inside ``out`` and moved into place at the end;
    a report file of an earlier run that this one does not write (``paths.png`` of gated cells) is
    removed, so the folder never mixes two runs.  A run killed before the end leaves the earlier
    files as they were (and a ``.partial-*`` folder).

    Returns
    -------
    dict of str to path
        ``norms_figure``, ``spectrum_figure``, ``rate_map``, ``paths_figure``,
        ``gradient_figure``, ``rates_csv``, ``norms_csv``, ``spectrum_csv``, ``gradient_csv``,
        ``json`` and ``markdown``.
    """
    if not isinstance(result, SweepResult):
        raise ParameterError(f"write_report needs the SweepResult that symrnn.decay.sweep returns, got "
                             f"{type(result).__name__}: run result = sweep(cells, scales, ...) first.")
    out = check_output_dir(out)
    staging = Path(tempfile.mkdtemp(prefix=".partial-", dir=out))
    try:
        written = _write_files(result, staging, title)
        paths = {}
        for key, path in written.items():
            os.replace(path, out / path.name)
            paths[key] = out / path.name
        for name in REPORT_FILES:
            if name not in {p.name for p in paths.values()} and (out / name).is_file():
                (out / name).unlink()
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return paths


def _write_files(result, out, title):
    paths = {}
    rates = rates_table(result)
    paths["norms_figure"] = plots.norms_figure(result, out / "norms_vs_lag.png")
    paths["spectrum_figure"] = plots.spectrum_figure(result, out / "spectrum.png")
    paths["rate_map"] = plots.rate_map_figure(rates, out / "rate_map.png", sign_changes(rates))
    p = plots.paths_figure(result, out / "paths.png")
    if p is not None:
        paths["paths_figure"] = p
    g = plots.gradient_figure(result, out / "gradient_by_lag.png")
    if g is not None:
        paths["gradient_figure"] = g
    rate_keys = list(rates[0]) if rates else []
    paths["rates_csv"] = _csv(out / "rates.csv", rate_keys, [[r[k] for k in rate_keys] for r in rates])
    paths["norms_csv"] = _csv(out / "norms.csv", *_norm_rows(result))
    paths["spectrum_csv"] = _csv(
        out / "spectrum.csv", ["cell", "scale", "seed", "index", "exponent"],
        [[t.cell_name, t.scale, t.seed, i + 1, e] for t, p, _ in result.rows() if p.exponents is not None
         for i, e in enumerate(p.exponents)])
    paths["gradient_csv"] = _csv(
        out / "gradient_by_lag.csv", ["cell", "scale", "seed", "gate", "lag", "norm", "share"],
        [[t.cell_name, t.scale, t.seed, gate, int(k), float(v[k]), float(g.share(gate)[k])]
         for t, _, g in result.rows() if g is not None for gate, v in g.gates.items() for k in g.lags])
    summary = dict(title=title, units="natural log per step", settings=result.settings, rates=rates,
                   runs=[dict(task=dict(cell=t.cell_name, scale=t.scale, seed=t.seed), profile=p.to_dict(),
                              gradient_by_lag=g.to_dict() if g is not None else None)
                         for t, p, g in result.rows()])
    paths["json"] = write_atomic(out / "summary.json", json.dumps(_json_safe(summary), indent=1) + "\n")
    paths["markdown"] = write_atomic(out / "summary.md", _markdown(result, rates, paths, title))
    return paths


def _norm_rows(result):
    keys = []
    for _, p, _ in result.rows():
        for k in p.blocks:
            if f"block_{k}" not in keys:
                keys.append(f"block_{k}")
        for s in p.direct:
            if f"direct_{s}" not in keys:
                keys.append(f"direct_{s}")
    header = ["cell", "scale", "seed", "lag", "ln_spectral", "ln_frobenius", "ln_dL_ds", "ln_pascanu_bound",
              "ln_step_norm_bound"] + [f"ln_{k}" for k in keys]
    rows = []
    for t, p, _ in result.rows():
        if p.log_spectral is None:
            continue
        for j, lag in enumerate(p.lags):
            extra = []
            for k in keys:
                kind, name = k.split("_", 1)
                src = p.blocks if kind == "block" else p.direct
                extra.append(float(src[name][0][j]) if name in src else "")
            rows.append([t.cell_name, t.scale, t.seed, int(lag), p.log_spectral[j], p.log_frobenius[j],
                         p.log_grad[j], p.log_bound[j] if p.log_bound is not None else "",
                         p.log_step_bound[j] if p.log_step_bound is not None else ""] + extra)
    return header, rows


def _md_num(v, digits=4):
    if v is None:
        return "-"
    if isinstance(v, float) and not np.isfinite(v):
        return "inf" if v > 0 else ("-inf" if v < 0 else "-")
    return f"{v:.{digits}g}" if isinstance(v, float) else str(v)


def _markdown(result, rates, paths, title):
    lines = [f"# {title}", "", _settings_line(result.settings), "",
             "Units: every exponent and rate is a **natural log per step** (divide by ln 2 for bits per step); "
             "a norm that decays at rate lambda shrinks by e every 1/|lambda| steps.", ""]
    lines += _rates_section(rates) + _notes_section(result) + _figures_section(paths) + _TABLES
    return "\n".join(lines)


def _settings_line(s):
    return (f"Cells {', '.join(s['cells'])}; H = {s['H']}, D = {s['D']}; T = {s['T']} steps; "
             + ("trained weights (given)" if s['init'] == "trained" else
                f"weights `{s['init']}` with recurrent matrices scaled by {s['scale_by']} to scales "
                f"{', '.join(f'{x:g}' for x in s['scales'])}")
             + (f"; the LSTM's forget-gate bias b_f set to {s['forget_bias']:g}" if s.get('forget_bias') is not None
                else "")
             + f"; inputs {s['inputs']}"
             f"{' (standard normal x ' + format(s['input_scale'], 'g') + ')' if s['inputs'] == 'random' else ''}; "
             f"seeds {s['seeds']}.")


def _rates_section(rates):
    lines = ["## Rates", "",
             "| cell | scale | lambda_1 (mean +- std over seeds) | min .. max | accuracy | ln(gamma sigma_max(W)) | "
             "Pascanu scale | steps per e-fold | regime |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rates:
        accuracy = ("exact (zero Jacobian)" if r["zero_jacobian"] else
                    f"{r['sum_identity_error']:.0e}" if r["sum_identity_error"] is not None else "-")
        lines.append(
            f"| {r['cell']} | {r['scale']:g} | {_md_num(r['top_exponent_mean'])} +- {_md_num(r['top_exponent_std'], 2)}"
            f" | {_md_num(r['top_exponent_min'])} .. {_md_num(r['top_exponent_max'])} | {accuracy} | "
            f"{_md_num(r['bound_rate'])} | {_md_num(r['pascanu_scale'])} | {_md_num(r['steps_per_e_fold'], 3)} | "
            f"{r['regime']} |")
    lines += ["", "`lambda_1` is the top Lyapunov exponent of the whole state (an LSTM's `(h, c)` together), by QR "
              "re-orthonormalisation of the exact step Jacobians. *accuracy*: the largest over seeds of "
              "`|sum_i lambda_i - mean_t ln|det J_t||`, the whole spectrum's sum against the same number by another "
              "route (natural log per step; shown when every exponent was computed; the target is 1e-6). "
              "*regime*: by the sign of lambda_1 only when every seed agrees; `neither` when the seeds straddle "
              "zero. `ln(gamma sigma_max(W))` is the rate of the Pascanu-Mikolov-Bengio bound "
              "`||dh_T/dh_t|| <= (gamma sigma_max(W))^(T-t)` (vanilla cells only; gamma = sup|f'|). The *Pascanu "
              "scale* is where `gamma sigma_max(W) = 1`: below it the bound proves vanishing; it is a sufficient "
              "condition, not the transition, which lies where the measured lambda_1 changes sign.", ""]
    changes = sign_changes(rates)
    for cell, found in changes.items():
        where = (", ".join(f"{x:.3g}" for x in found) if found else
                 "nowhere between the scales run (the sign of the mean lambda_1 does not change)")
        lines.append(f"- Measured transition of {cell} (mean lambda_1 = 0, interpolated in the scale): {where}.")
    return lines + [""]


def _notes_section(result):
    lines = []
    notes = [(t, p) for t, p, _ in result.rows() if any(not n.startswith("Exponents' accuracy") for n in p.notes)]
    if notes:
        lines += ["## Notes", ""]
        for t, p in notes:
            for n in p.notes:
                if not n.startswith("Exponents' accuracy"):
                    lines.append(f"- {t.cell_name}, scale {t.scale:g}, seed {t.seed}: {n}")
        lines.append("")
    return lines


def _figures_section(paths):
    lines = []
    figures = [("norms_figure", "Gradient norm against lag",
                "`||ds_{t+k}/ds_t||_2` of the whole state against the lag k, from lag 0 at the start of the "
                "sequence; dashed: the Pascanu bound. A straight line has slope lambda_1 / ln 10 decades per step."),
               ("spectrum_figure", "Lyapunov spectrum",
                "The first k exponents (natural log per step), mean over seeds, band min to max."),
               ("rate_map", "Decay rate over cell and scale",
                "lambda_1 per cell and scale; blue vanishes, red explodes; the white dashed bar is where the "
                "measured lambda_1 changes sign (interpolated); the black bar is the Pascanu scale "
                "`gamma sigma_max(W) = 1`, below which the bound proves vanishing (a sufficient condition, not the "
                "transition)."),
               ("paths_figure", "Gated paths",
                "The whole Jacobian product beside its blocks (`dc_T/dc_t` of the LSTM) and the direct paths: the "
                "terms of the step Jacobian without a weight matrix (`prod f` through the LSTM's cell state, "
                "`prod z` through the GRU's update gate); gray: `||dL_{t+k}/ds_t||` for a unit loss gradient on "
                "the output state at step t + k. Blocks of a product that has become rank one share its slope and "
                "overlap; each has its own colour and markers, and the lower panel shows each block's norm relative "
                "to the whole state's."),
               ("gradient_figure", "Where dL/dW comes from",
                "For a loss `<g, h_T>` at the last step: the share of `sum_t ||G_t||_F` that comes from lag T - t, "
                "per gate (the parameters read by the gate's equation).")]
    for key, head, text in figures:
        if key in paths:
            lines += [f"## {head}", "", text, "", f"![{head}]({Path(paths[key]).name})", ""]
    return lines


_TABLES = ["## Tables", "",
              "- `rates.csv`: the table above, with `norm_slope` (the slope of ln||.||_2 over the second half of the "
              "lags, natural log per step; -inf where the product became exactly zero, as lambda_1 is -inf "
              "there and `steps_per_e_fold` 0) beside lambda_1.",
              "- `norms.csv`: every run and recorded lag: `ln` of the spectral and Frobenius norms of the whole "
              "state's product, of `dL_{t+k}/ds_t` for a unit loss gradient on the output state, of the bounds, of "
              "each block and direct path.",
              "- `spectrum.csv`, `gradient_by_lag.csv`, `summary.json` (everything, with each run's settings).", ""]
