"""Shared figure conventions: headless backend, one style, reference slope lines."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import NullFormatter, ScalarFormatter  # noqa: E402

STYLE = {
    "figure.dpi": 100,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "legend.fontsize": 8,
    "legend.frameon": False,
    "axes.titlesize": 11,
}

# one colour per method, everywhere
METHOD_COLORS = {
    "exact": "black",
    "maml": "black",
    "maml_hvp": "tab:gray",
    "fob_forward": "tab:blue",
    "fob_symmetric": "tab:orange",
    "fob_order4": "tab:green",
    "fob_complex": "tab:purple",
    "fo_maml": "tab:red",
    "reptile": "tab:brown",
}


def style():
    """Context manager for the project style: draw and save a figure inside it."""
    return plt.rc_context(STYLE)


def panels(n: int, width: float = 5.0, height: float = 4.0, cols: int | None = None, **kw):
    """``n`` axes of ``width x height`` inches, in rows of ``cols`` (default: one row; call
    inside :func:`style`)."""
    cols = cols or n
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(width * cols, height * rows), squeeze=False, **kw)
    for ax in axes.flat[n:]:
        ax.remove()
    return fig, list(axes.flat[:n])


def reference_slope(ax, x0: float, y0: float, slope: float, decades: float = 2.0, label: str | None = None, **kw):
    """A dashed line ``y = y0 (x / x0)^slope`` over ``decades`` decades from x0."""
    xs = [x0, x0 * 10**decades]
    ax.plot(xs, [y0, y0 * 10 ** (slope * decades)], linestyle="--", color=kw.pop("color", "grey"),
            linewidth=1, label=label, **kw)


def plain_ticks(axis, ticks=None):
    """Plain numbers on a log axis (at ``ticks``, the measured values, when given), no minor labels."""
    if ticks is not None:
        axis.set_ticks(ticks, [f"{t:g}" for t in ticks])
    else:
        axis.set_major_formatter(ScalarFormatter())
    axis.set_minor_formatter(NullFormatter())


def close(fig):
    plt.close(fig)


QUICK_MARK = "QUICK RUN: small budgets, not the paper's verdicts"


def mark_quick(fig, results: dict):
    """Stamp ``fig`` as a quick run's when ``results["summary"]["quick"]``: a large diagonal
    QUICK watermark and :data:`QUICK_MARK` along the top edge, so that no reader takes a
    pipeline check for the committed figure. Call it on every figure, just before saving."""
    if not results.get("summary", {}).get("quick"):
        return
    fig.text(0.5, 0.5, "QUICK", ha="center", va="center", rotation=25, fontsize=90, fontweight="bold",
             color="tab:red", alpha=0.12, zorder=100)
    fig.text(0.005, 0.995, QUICK_MARK, ha="left", va="top", fontsize=8, color="tab:red", zorder=100,
             bbox=dict(facecolor="white", edgecolor="tab:red", alpha=0.9, pad=2))
