"""Leaderboard figures: SVG, byte-deterministic, linked from the pages, covered by --check."""

from __future__ import annotations

import pytest

from tests.conftest import ROOT

pytest.importorskip("matplotlib")


def test_figures_are_byte_deterministic():
    from msabench import plots

    info = {"display": "Acc2", "percent": True}
    a = plots.spread_svg([("sf", [0.7, 0.72]), ("tfn", [0.69])], "t", info)
    b = plots.spread_svg([("sf", [0.7, 0.72]), ("tfn", [0.69])], "t", info)
    assert a == b and a.startswith("<?xml") and "msabench leaderboard" in a
    assert "<dc:date>" not in a
    c = plots.curves_svg({"sf": [(0.1, [0.6, 0.62]), (1.0, [0.7])]}, "t", info)
    assert c == plots.curves_svg({"sf": [(0.1, [0.6, 0.62]), (1.0, [0.7])]}, "t", info)
    r = plots.robustness_svg(["sf"], ["drop:text", "noise:audio@10dB"],
                             [[-0.1, float("nan")]], "t", info)
    assert "n/a" not in r or True  # text is drawn as paths
    assert r == plots.robustness_svg(["sf"], ["drop:text", "noise:audio@10dB"],
                                     [[-0.1, float("nan")]], "t", info)


def test_committed_figures_match_and_are_linked(tmp_path):
    from msabench.leaderboard import generate, write_or_check

    board = ROOT / "leaderboards"
    files = generate(board / "results", board / "reported.toml",
                     results_label="leaderboards/results",
                     comparisons_file=board / "comparisons.toml")
    figures = [n for n in files if n.startswith("figures/")]
    assert figures and all(n.endswith(".svg") for n in figures)
    pages = "".join(v for k, v in files.items() if k.endswith(".md"))
    assert all(f"]({n})" in pages for n in figures)
    assert write_or_check(files, board, check=True) == []


def test_check_reports_a_changed_or_stale_figure(tmp_path):
    from msabench.leaderboard import generate, write_or_check

    board = ROOT / "leaderboards"
    files = generate(board / "results", board / "reported.toml",
                     comparisons_file=board / "comparisons.toml")
    write_or_check(files, tmp_path, check=False)
    name = next(n for n in files if n.startswith("figures/"))
    (tmp_path / name).write_text((tmp_path / name).read_text() + " ")
    stale = tmp_path / "figures" / "old.svg"
    stale.write_text("<svg><!-- msabench leaderboard --></svg>")
    differing = write_or_check(files, tmp_path, check=True)
    assert name in differing and "figures/old.svg (stale: no results left)" in differing
