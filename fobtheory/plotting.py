"""Shared figure conventions: headless backend, one style, reference slope lines."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

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


def close(fig):
    plt.close(fig)
