"""Figures of a decay sweep (matplotlib, Agg backend; PNG written atomically).

Norms span hundreds of decades (``1e-4000`` at long lags), beyond what a
matplotlib log axis can hold as numbers, so they are plotted as ``log10`` on a
linear axis whose ticks read as powers of ten: the same picture as a log scale.
"""
from __future__ import annotations

import io
import warnings
from collections import defaultdict

import numpy as np

from ..fileio import write_atomic

LN10 = np.log(10.0)


def _subplots(*grid, figsize, squeeze=True, layout="constrained", gridspec_kw=None):
    """A figure of its own (``matplotlib.figure.Figure``, not pyplot): drawing one never changes
    the backend or the open figures of a notebook or a script."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize, layout=layout)
    return fig, fig.subplots(*grid, squeeze=squeeze, gridspec_kw=gridspec_kw)


def _powers_of_ten(ax, axis="y"):
    from matplotlib.ticker import FuncFormatter, MaxNLocator

    fmt = FuncFormatter(lambda v, _: f"$10^{{{int(round(v))}}}$" if abs(v - round(v)) < 1e-9 else "")
    target = ax.yaxis if axis == "y" else ax.xaxis
    target.set_major_locator(MaxNLocator(nbins=7, integer=True))
    target.set_major_formatter(fmt)


def _save(fig, path):
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    write_atomic(path, buf.getvalue())
    return path


def _colors(n):
    import matplotlib

    cmap = matplotlib.colormaps["viridis"]
    return [cmap(x) for x in np.linspace(0.05, 0.85, max(n, 1))]


def by_cell_scale(result):
    groups = defaultdict(list)
    for task, prof, grad in result.rows():
        groups[(task.cell_name, task.scale)].append((task, prof, grad))
    return groups


def _cells_scales(result):
    cells = list(dict.fromkeys(t.cell_name for t in result.tasks))
    scales = sorted(set(t.scale for t in result.tasks))
    return cells, scales


def norms_figure(result, path):
    """``||ds_{t+k}/ds_t||_2`` against the lag k: a panel per cell, a line per scale (median over
    seeds, band from min to max), the Pascanu bound dashed where the cell has one."""
    cells, scales = _cells_scales(result)
    groups = by_cell_scale(result)
    fig, axes = _subplots(1, len(cells), figsize=(4.8 * len(cells), 4.2), squeeze=False)
    colors = _colors(len(scales))
    for ax, cell in zip(axes[0], cells):
        lo_all, hi_all = [], []
        for color, scale in zip(colors, scales):
            runs = groups.get((cell, scale), [])
            if not runs or runs[0][1].log_spectral is None:
                continue
            lags = runs[0][1].lags
            Y = np.array([r[1].log_spectral for r in runs]) / LN10
            med = np.median(Y, axis=0)
            ax.plot(lags, med, color=color, lw=1.8, label=f"scale {scale:g}")
            if len(runs) > 1:
                ax.fill_between(lags, Y.min(axis=0), Y.max(axis=0), color=color, alpha=0.2, lw=0)
            if runs[0][1].log_bound is not None:
                ax.plot(lags, np.median([r[1].log_bound for r in runs], axis=0) / LN10, color=color, ls="--",
                        lw=1.0)
            if np.isfinite(med).any():
                lo_all.append(np.nanmin(med[np.isfinite(med)]))
                hi_all.append(np.nanmax(med[np.isfinite(med)]))
        if any(groups[(cell, s)][0][1].log_bound is not None for s in scales if (cell, s) in groups):
            ax.plot([], [], color="gray", ls="--", lw=1.0, label=r"bound $(\gamma\,\sigma_{max}(W))^k$")
        ax.set_title(f"{cell}: whole state {'(' + ', '.join(runs[0][1].state_names) + ')' if runs else ''}")
        ax.set_xlabel("lag k (steps)")
        ax.set_ylabel(r"$\|\partial s_{t+k}/\partial s_t\|_2$ (log scale)")
        ax.axhline(0, color="black", lw=0.6)
        # the measured curves set the frame; a bound far above them leaves it (it is still drawn)
        bottom = min(lo_all + [-1.0])
        top = max(hi_all + [1.0])
        span = top - bottom
        ax.set_ylim(bottom - 0.05 * span, top + 0.25 * span)
        _powers_of_ten(ax)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="lower left")
    fig.suptitle("Gradient norm against lag (median over seeds; band: min to max)", fontsize=11)
    return _save(fig, path)


def spectrum_figure(result, path):
    """The Lyapunov exponents (natural log per step) against their index, a panel per cell."""
    cells, scales = _cells_scales(result)
    groups = by_cell_scale(result)
    fig, axes = _subplots(1, len(cells), figsize=(4.8 * len(cells), 4.2), squeeze=False)
    colors = _colors(len(scales))
    from matplotlib.ticker import MaxNLocator

    for ax, cell in zip(axes[0], cells):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        for color, scale in zip(colors, scales):
            runs = groups.get((cell, scale), [])
            if not runs or runs[0][1].exponents is None:
                continue
            E = np.array([r[1].exponents for r in runs])
            E = np.where(np.isfinite(E), E, np.nan)
            if np.isnan(E).all():  # every exponent -inf: the gradient became exactly zero, nothing to draw
                continue
            idx = np.arange(1, E.shape[1] + 1)
            with warnings.catch_warnings():  # a column of -inf exponents (exactly zero directions) is not drawn
                warnings.simplefilter("ignore", RuntimeWarning)
                mean = np.nanmean(E, axis=0)
                low, high = np.nanmin(E, axis=0), np.nanmax(E, axis=0)
            ax.plot(idx, mean, color=color, lw=1.5, marker="o", ms=2.5, label=f"scale {scale:g}")
            if E.shape[0] > 1:
                ax.fill_between(idx, low, high, color=color, alpha=0.2, lw=0)
        ax.axhline(0, color="black", lw=0.8)
        ax.set_title(f"{cell}: Lyapunov spectrum")
        ax.set_xlabel("exponent index i")
        ax.set_ylabel(r"$\lambda_i$ (natural log per step)")
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8, loc="lower left")
        else:
            ax.text(0.5, 0.5, "every exponent is -inf:\nthe gradient became exactly zero", transform=ax.transAxes,
                    ha="center", va="center", fontsize=9)
    fig.suptitle("Lyapunov exponents by QR (mean over seeds; band: min to max)", fontsize=11)
    return _save(fig, path)


def rate_map_figure(rates, path, changes=None):
    """A map of the top exponent over cell (rows) and scale (columns), with the scales where the
    measured exponent changes sign (``changes``: ``{cell: [scale, ...]}``) and the Pascanu scale
    ``gamma sigma_max(W) = 1`` (a sufficient condition for vanishing) marked."""
    cells = list(dict.fromkeys(r["cell"] for r in rates))
    scales = sorted(set(r["scale"] for r in rates))
    Z = np.full((len(cells), len(scales)), np.nan)
    for r in rates:
        Z[cells.index(r["cell"]), scales.index(r["scale"])] = r["top_exponent_mean"]
    fig, ax = _subplots(figsize=(1.1 * len(scales) + 3.6, 0.7 * len(cells) + 2.2))
    finite = Z[np.isfinite(Z)]
    lim = max(np.abs(finite).max(), 1e-3) if finite.size else 1.0
    from matplotlib.colors import TwoSlopeNorm

    im = ax.imshow(Z, cmap="RdBu_r", norm=TwoSlopeNorm(0.0, -lim, lim), aspect="auto")
    for i in range(len(cells)):
        for j in range(len(scales)):
            if np.isfinite(Z[i, j]):
                ax.text(j, i, f"{Z[i, j]:.3f}", ha="center", va="center", fontsize=8, zorder=5,
                        bbox=dict(boxstyle="round,pad=0.15", fc="white", ec="none", alpha=0.8))
    def position(scale):
        return np.interp(scale, scales, np.arange(len(scales)), left=-0.5, right=len(scales) - 0.5) \
            if len(scales) > 1 else 0.0

    marked = set()
    for r in rates:
        crit = r.get("pascanu_scale")
        if crit is None or not np.isfinite(crit):
            continue
        i = cells.index(r["cell"])
        pos = position(crit)
        ax.plot([pos, pos], [i - 0.45, i + 0.45], color="black", lw=2.5,
                label=r"Pascanu $\gamma\,\sigma_{max}(W)=1$ (vanishing proven below)" if "bound" not in marked
                else None)
        marked.add("bound")
    for cell, found in (changes or {}).items():
        i = cells.index(cell)
        for scale in found:
            pos = position(scale)
            ax.plot([pos, pos], [i - 0.45, i + 0.45], color="white", lw=3.5, zorder=6)
            ax.plot([pos, pos], [i - 0.45, i + 0.45], color="black", lw=1.5, ls="--", zorder=7,
                    label=r"measured $\lambda_1 = 0$ (interpolated)" if "change" not in marked else None)
            marked.add("change")
    ax.set_xticks(range(len(scales)), [f"{s:g}" for s in scales])
    ax.set_yticks(range(len(cells)), cells)
    ax.set_xlabel("weight scale")
    ax.set_ylabel("cell")
    ax.set_title(r"Top Lyapunov exponent $\lambda_1$ (natural log per step): < 0 vanishing, > 0 exploding",
                 fontsize=10)
    fig.colorbar(im, ax=ax, label=r"$\lambda_1$ (ln per step)")
    if marked:
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.18), fontsize=8, frameon=False, ncol=2)
    return _save(fig, path)


def paths_figure(result, path, scale=None):
    """Gated cells: the whole state's norm beside its blocks, the direct paths (LSTM's
    ``prod f`` through ``c``, the GRU's ``prod z``) and ``dL/ds`` for a unit loss gradient,
    at one scale (default: closest to 1).  The blocks of a product that has become rank one
    share its slope and lie on top of each other, so each has its own colour and markers, and
    a lower panel shows each block's norm relative to the whole state's."""
    cells, scales = _cells_scales(result)
    scale = min(scales, key=lambda s: abs(np.log(s) if s > 0 else 1e9)) if scale is None else scale
    groups = by_cell_scale(result)
    runs = {c: groups[(c, scale)][0][1] for c in cells if (c, scale) in groups
            and groups[(c, scale)][0][1].log_spectral is not None}
    shown = [c for c, p in runs.items() if p.direct or p.blocks]
    if not shown:
        return None
    fig, axes = _subplots(2, len(shown), figsize=(4.8 * len(shown), 6.4), squeeze=False,
                          gridspec_kw=dict(height_ratios=[2.2, 1]))
    block_colors = ["tab:blue", "tab:orange", "tab:green", "tab:purple", "tab:brown", "tab:pink", "tab:olive",
                    "tab:cyan", "tab:gray"]
    markers = ["o", "s", "^", "v", "D", "P", "X", "<", ">"]
    for col, cell in enumerate(shown):
        ax, rel = axes[0][col], axes[1][col]
        p = runs[cell]
        n = len(p.lags)
        ax.plot(p.lags, p.log_spectral / LN10, color="black", lw=2.5, label=f"whole state ({', '.join(p.state_names)})")
        styles = ["-", "--", "-.", ":"]
        nb = max(len(p.blocks), 1)
        for j, (key, (spec, _)) in enumerate(p.blocks.items()):
            s, q = key.split("<-")
            style = dict(color=block_colors[j % len(block_colors)], ls=styles[j % len(styles)], lw=1.3,
                         marker=markers[j % len(markers)], ms=4,
                         markevery=(j * max(n // (6 * nb), 1), max(n // 6, 1)))  # staggered: every block shows
            ax.plot(p.lags, spec / LN10, label=f"block d{s}/d{q}", **style)
            with np.errstate(invalid="ignore"):
                rel.plot(p.lags, (spec - p.log_spectral) / LN10, **style)
        for s, (spec, _) in p.direct.items():
            ax.plot(p.lags, spec / LN10, lw=2, color="tab:red", ls=":",
                    label=f"direct path of {s} (no weight matrix)")
        if p.log_grad is not None:
            ax.plot(p.lags, p.log_grad / LN10, lw=1.0, color="gray",
                    label=r"$\|dL_{t+k}/ds_t\|$, unit loss gradient on the output")
        ax.set_title(f"{cell}, scale {scale:g}, seed {p.meta.get('seed', 0)}")
        ax.set_xlabel("lag k (steps)")
        ax.set_ylabel("spectral norm (log scale)")
        _powers_of_ten(ax)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="lower left")
        if not p.blocks:
            rel.axis("off")
            rel.text(0.5, 0.5, f"{cell} has one state: no blocks", transform=rel.transAxes, ha="center",
                     va="center", fontsize=9)
        else:
            rel.set_xlabel("lag k (steps)")
            rel.set_ylabel(r"$\log_{10}$(block / whole state)", fontsize=9)
            rel.grid(alpha=0.3)
    fig.suptitle("Paths: the whole Jacobian, its blocks, and the gated direct paths", fontsize=11)
    return _save(fig, path)


def gradient_figure(result, path, scale=None):
    """The share of each gate's ``||dL/dW||`` that comes from each lag, at one scale."""
    cells, scales = _cells_scales(result)
    scale = min(scales, key=lambda s: abs(np.log(s) if s > 0 else 1e9)) if scale is None else scale
    groups = by_cell_scale(result)
    shown = [c for c in cells if (c, scale) in groups and groups[(c, scale)][0][2] is not None]
    if not shown:
        return None
    fig, axes = _subplots(1, len(shown), figsize=(4.8 * len(shown), 4.2), squeeze=False)
    for ax, cell in zip(axes[0], shown):
        grad = groups[(cell, scale)][0][2]
        for gate, v in grad.gates.items():
            share = grad.share(gate)
            ax.semilogy(grad.lags, np.where(share > 0, share, np.nan), lw=1.5, label=f"gate {gate}")
        ax.set_title(f"{cell}, scale {scale:g}: dL/dW by lag")
        ax.set_xlabel("lag T - t (steps)")
        ax.set_ylabel(r"share of $\sum_t \|G_t\|_F$ (log scale)")
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=8)
    fig.suptitle(r"Where the gradient comes from: $\|G_t\|_F / \sum_t \|G_t\|_F$ for a loss at the last step",
                 fontsize=11)
    return _save(fig, path)
