"""Leaderboard figures (matplotlib, SVG), byte-deterministic so ``--check`` can compare them.

Determinism: no pyplot state (a bare :class:`~matplotlib.figure.Figure` on the SVG canvas),
a fixed ``svg.hashsalt`` (the ids matplotlib derives for clip paths and glyphs), no date in
the metadata, text as paths (``svg.fonttype = "path"``, matplotlib's bundled DejaVu Sans),
and inputs sorted before drawing. The same matplotlib version gives the same bytes; the
committed figures record theirs in the SVG metadata (``Creator``).
"""

from __future__ import annotations

import io
import math
from typing import Any, Mapping, Sequence

CREATOR = "msabench leaderboard"
RC = {"svg.hashsalt": "msabench", "svg.fonttype": "path", "font.family": "DejaVu Sans",
      "font.size": 9, "axes.grid": True, "grid.alpha": 0.3, "path.simplify": False}


def available() -> bool:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def _scale(info: Mapping[str, Any]) -> float:
    return 100.0 if info.get("percent") else 1.0


def _figure(width: float, height: float) -> Any:
    from matplotlib.backends.backend_svg import FigureCanvasSVG
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height))
    FigureCanvasSVG(fig)
    return fig


def _svg(fig: Any) -> str:
    import matplotlib

    buf = io.StringIO()
    fig.savefig(buf, format="svg", bbox_inches="tight",
                metadata={"Date": None, "Creator": f"{CREATOR} (matplotlib "
                                                   f"{matplotlib.__version__})"})
    return buf.getvalue()


def _render(draw: Any, width: float, height: float) -> str:
    import matplotlib

    with matplotlib.rc_context(RC):
        fig = _figure(width, height)
        draw(fig)
        return _svg(fig)


def spread_svg(rows: Sequence[tuple[str, Sequence[float]]], title: str,
               info: Mapping[str, Any]) -> str:
    """Per-seed values of each table row (dots) and their mean (bar)."""
    scale = _scale(info)

    def draw(fig: Any) -> None:
        ax = fig.add_subplot()
        for i, (label, values) in enumerate(rows):
            ys = [i + 0.12 * ((j % 5) - 2) / 2 for j in range(len(values))]
            ax.scatter([v * scale for v in values], ys, s=14, color="tab:blue", alpha=0.7,
                       zorder=3)
            if values:
                mean = sum(values) / len(values) * scale
                ax.plot([mean, mean], [i - 0.3, i + 0.3], color="black", lw=1.5, zorder=4)
        ax.set_yticks(range(len(rows)), [label for label, _ in rows])
        ax.invert_yaxis()
        ax.set_xlabel(f"{info.get('display', 'metric')} (test; dots: seeds, bar: mean)")
        ax.set_title(title, fontsize=9)

    return _render(draw, 6.0, 0.8 + 0.32 * max(len(rows), 1))


def curves_svg(curves: Mapping[str, Sequence[tuple[float, Sequence[float]]]], title: str,
               info: Mapping[str, Any]) -> str:
    """Metric vs labelled fraction (log x): per-seed points and the mean line per method."""
    scale = _scale(info)

    def draw(fig: Any) -> None:
        ax = fig.add_subplot()
        for k, (label, points) in enumerate(sorted(curves.items())):
            color = f"C{k % 10}"
            xs, means = [], []
            for fraction, values in points:
                ax.scatter([fraction] * len(values), [v * scale for v in values], s=10,
                           color=color, alpha=0.45, zorder=3)
                if values:
                    xs.append(fraction)
                    means.append(sum(values) / len(values) * scale)
            ax.plot(xs, means, marker="o", color=color, label=label, zorder=4)
        ax.set_xscale("log")
        fractions = sorted({f for pts in curves.values() for f, _ in pts})
        ax.set_xticks(fractions, [f"{f:g}" for f in fractions])
        ax.minorticks_off()
        ax.set_xlabel("labelled fraction of train (log scale)")
        ax.set_ylabel(f"test {info.get('display', 'metric')}")
        ax.set_title(title, fontsize=9)
        ax.legend(fontsize=8)

    return _render(draw, 6.0, 3.6)


def robustness_svg(rows: Sequence[str], columns: Sequence[str],
                   drops: Sequence[Sequence[float]], title: str,
                   info: Mapping[str, Any]) -> str:
    """Heat map of the change from clean per method (rows) and perturbation (columns);
    NaN (unsupported) cells are grey and marked ``n/a``."""
    scale = _scale(info)
    better_up = bool(info.get("higher_is_better", True))

    def draw(fig: Any) -> None:
        import numpy as np

        values = np.array([[d * scale for d in row] for row in drops], dtype=float)
        finite = values[np.isfinite(values)]
        bound = float(np.abs(finite).max()) if finite.size else 1.0
        bound = bound or 1.0
        ax = fig.add_subplot()
        ax.grid(False)
        import matplotlib

        cmap = matplotlib.colormaps["RdBu" if better_up else "RdBu_r"].with_extremes(
            bad="#dddddd")
        masked = np.ma.masked_invalid(values)
        image = ax.imshow(masked, cmap=cmap, vmin=-bound, vmax=bound, aspect="auto")
        for i in range(values.shape[0]):
            for j in range(values.shape[1]):
                v = values[i, j]
                ax.text(j, i, "n/a" if not math.isfinite(v) else f"{v:+.1f}" if scale > 1
                        else f"{v:+.3f}", ha="center", va="center", fontsize=7)
        ax.set_xticks(range(len(columns)), list(columns), rotation=45, ha="right")
        ax.set_yticks(range(len(rows)), list(rows))
        fig.colorbar(image, ax=ax, label=f"change in test {info.get('display', 'metric')}")
        ax.set_title(title, fontsize=9)

    return _render(draw, 1.6 + 0.55 * max(len(columns), 1), 1.4 + 0.35 * max(len(rows), 1))
