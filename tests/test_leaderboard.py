"""Leaderboards from fabricated result files: numbers, marking, labels, --check."""

import statistics

import pytest
from typer.testing import CliRunner

from msabench.leaderboard import HEADER_PREFIX, generate, write_or_check
from msabench.results import result_path, write_result

INFO = {
    "acc2_has0": {"display": "Acc2-has0", "higher_is_better": True, "percent": True, "order": 1},
    "mae": {"display": "MAE", "higher_is_better": False, "percent": False, "order": 8},
}


def _result(method, seed, acc, mae, dataset="toy", setting="default", variant="default",
            synthetic=False):
    return {"schema_version": 1, "method": method, "dataset": dataset, "setting": setting,
            "variant": variant, "seed": seed, "synthetic": synthetic,
            "dataset_title": "Toy data", "config": {}, "config_hash": "x",
            "metrics": {"test": {"acc2_has0": acc, "mae": mae}, "valid": {}},
            "metric_info": INFO, "not_applicable": []}


@pytest.fixture
def results(tmp_path):
    root = tmp_path / "results"
    values = {"alpha": [(0.70, 1.00), (0.72, 0.90), (0.74, 0.95)],
              "beta": [(0.80, 1.10), (0.78, 1.20)]}
    for method, rows in values.items():
        for i, (acc, mae) in enumerate(rows):
            write_result(result_path(root, "toy", "default", method, "default", 1111 + i),
                         _result(method, 1111 + i, acc, mae))
    write_result(result_path(root, "toy", "default", "alpha", "m-t", 1111),
                 _result("alpha", 1111, 0.5, 1.5, variant="m-t"))
    write_result(result_path(root, "synth", "unaligned", "alpha", "default", 1111),
                 _result("alpha", 1111, 0.6, 1.2, dataset="synth", setting="unaligned",
                         synthetic=True))
    return root, values


def _row(md, label):
    return next(line for line in md.splitlines() if line.startswith(f"| {label} "))


def test_mean_and_sample_std_per_method(results):
    root, values = results
    files = generate(root)
    md = files["toy.md"]
    assert md.startswith(HEADER_PREFIX)
    accs = [a for a, _ in values["alpha"]]
    maes = [m for _, m in values["alpha"]]
    alpha = _row(md, "alpha")
    assert f"{statistics.mean(accs) * 100:.2f} ± {statistics.stdev(accs) * 100:.2f}" in alpha
    assert f"{statistics.mean(maes):.3f} ± {statistics.stdev(maes):.3f}" in alpha
    assert "| 3 " in alpha  # number of seeds
    # best per column among rows with the usual seed count (3): beta has the highest accuracy
    # but only 2 seeds, so it is marked and never bold; alpha is best in both columns
    beta = _row(md, "beta ‡")
    assert "79.00 ± 1.41" in beta and "**" not in beta
    assert f"**{statistics.mean(accs) * 100:.2f}" in alpha
    assert f"**{statistics.mean(maes):.3f}" in alpha
    assert "‡ Fewer seeds than the table's usual 3" in md
    assert "**" not in _row(md, "alpha (m-t)")
    assert "Acc2-has0" in md and "percentages" in md


def test_synthetic_dataset_is_labelled(results):
    root, _ = results
    md = generate(root)["synth.md"]
    assert "SYNTHETIC DATA" in md and "(synthetic)" in md
    assert "SYNTHETIC" in generate(root)["README.md"]
    assert "SYNTHETIC" not in generate(root)["toy.md"]


def test_reported_rows_are_separate(results, tmp_path):
    root, _ = results
    rep = tmp_path / "reported.toml"
    rep.write_text('[[row]]\ndataset = "toy"\nmethod = "paper-x"\nsource = "Paper X, Table 1"\n'
                   'metrics = { acc2_has0 = 0.99, mae = 0.1 }\n')
    md = generate(root, rep)["toy.md"]
    measured, _, reported = md.partition("Reported (published numbers, NOT measured")
    assert "paper-x" not in measured
    assert "| paper-x" in reported and "99.00" in reported
    # a reported 99% must not steal the best mark from measured rows
    assert "**72.00 ± 2.00**" in measured
    # a key no measured column has (a convention-free "acc2") gets its own column
    rep.write_text('[[row]]\ndataset = "toy"\nmethod = "paper-y"\nsource = "Paper Y"\n'
                   'note = "own split"\nmetrics = { acc2 = 0.7314, mae = 0.2 }\n')
    reported = generate(root, rep)["toy.md"].partition("Reported (published")[2]
    assert "acc2 (as reported)" in reported and "73.14" in reported  # one unit per column
    assert "Paper Y (own split)" in _row(reported, "paper-y")


def test_dataset_with_only_reported_rows_gets_a_reported_only_page(results, tmp_path):
    root, _ = results
    rep = tmp_path / "reported.toml"
    rep.write_text('[[row]]\ndataset = "chsims2"\nmethod = "paper-z"\nsource = "Paper Z"\n'
                   'metrics = { acc2 = 0.8702, acc2_weak = 0.802, mae = 0.246 }\n')
    files = generate(root, rep)
    page = files["chsims2.md"]
    assert "**No measured results.**" in page and "not on this machine" in page
    assert "| paper-z" in page and "87.02" in page and "80.20" in page and "0.246" in page
    assert "paper-z" not in files["toy.md"]


def test_check_detects_drift_and_stale(results, tmp_path):
    root, _ = results
    out = tmp_path / "boards"
    files = generate(root)
    assert write_or_check(files, out, check=False)  # first write changes everything
    assert write_or_check(files, out, check=True) == []
    (out / "toy.md").write_text((out / "toy.md").read_text() + "edited by hand\n")
    (out / "old.md").write_text(HEADER_PREFIX + " ... -->\nold\n")
    (out / "notes.md").write_text("hand-written, not generated\n")
    diff = write_or_check(files, out, check=True)
    assert "toy.md" in diff and any(d.startswith("old.md") for d in diff)
    assert not any(d.startswith("notes.md") for d in diff)
    write_or_check(files, out, check=False)
    assert not (out / "old.md").exists() and (out / "notes.md").exists()


def test_cli_check_exit_codes(results, tmp_path):
    from msabench.cli import make_app as get_app

    root, _ = results
    out = tmp_path / "boards"
    runner = CliRunner()
    args = ["leaderboard", "--results", str(root), "--out", str(out),
            "--reported", str(tmp_path / "none.toml")]
    assert runner.invoke(get_app(), args + ["--check"]).exit_code == 1
    assert runner.invoke(get_app(), args).exit_code == 0
    ok = runner.invoke(get_app(), args + ["--check"])
    assert ok.exit_code == 0, ok.output


def test_cli_print_writes_nothing_and_prints_every_dataset_page(results, tmp_path):
    from msabench.cli import make_app as get_app
    from msabench.leaderboard import dataset_pages

    root, _ = results
    out = tmp_path / "boards"
    args = ["leaderboard", "--results", str(root), "--out", str(out),
            "--reported", str(tmp_path / "none.toml"), "--print"]
    shown = CliRunner().invoke(get_app(), args)
    assert shown.exit_code == 0, shown.output
    assert not out.exists()
    files = generate(root, tmp_path / "none.toml", results_label=root.as_posix())
    assert shown.output == dataset_pages(files) + "\n"
    assert shown.output.index("# Leaderboard: synth") < shown.output.index("# Leaderboard: toy")
    assert "| alpha " in shown.output and "# msabench leaderboards" not in shown.output  # no index
    both = CliRunner().invoke(get_app(), args + ["--check"])
    assert both.exit_code == 2 and "exclude each other" in both.output


def test_result_files_are_world_readable(tmp_path):
    import os
    import stat

    path = write_result(tmp_path / "r" / "seed-1.json", _result("alpha", 1, 0.5, 1.0))
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask


def test_paired_comparison_per_seed_differences_and_t_test(results, tmp_path):
    """alpha vs beta share seeds 1111 and 1112: differences, their mean ± std and the paired
    t statistic are checked against a hand computation (t = mean / (std / sqrt(n)))."""
    import math

    from scipy import stats

    root, values = results
    write_result(result_path(root, "toy", "default", "beta", "default", 1113),
                 _result("beta", 1113, 0.79, 1.0))
    comp = tmp_path / "comparisons.toml"
    comp.write_text('[[pair]]\ndataset = "toy"\nbaseline = "alpha"\ncandidate = "beta"\n'
                    'metrics = ["acc2_has0", "mae", "missing_key"]\nnote = "toy pair"\n')
    md = generate(root, comparisons_file=comp)["toy.md"]
    assert "Paired comparison: `beta` vs `alpha`" in md and "toy pair" in md
    diffs = [0.80 - 0.70, 0.78 - 0.72, 0.79 - 0.74]
    line = next(x for x in md.splitlines() if x.startswith("| Acc2-has0"))
    assert ", ".join(f"{d * 100:+.2f}" for d in diffs) in line
    mean, sd = statistics.mean(diffs), statistics.stdev(diffs)
    assert f"{mean * 100:+.2f} ± {sd * 100:.2f}" in line
    t = mean / (sd / math.sqrt(3))
    p = 2 * stats.t.sf(abs(t), df=2)
    assert f"| {p:.3f} " in line
    assert ("yes: candidate better" in line) == (p < 0.05)
    mae_line = next(x for x in md.splitlines() if x.startswith("| MAE"))
    assert "+0.100, +0.300, +0.050" in mae_line  # beta's MAE is higher: a worse difference
    assert "missing_key" not in md
    # a pair whose rows have no results renders nothing; a malformed file is a clear error
    comp.write_text('[[pair]]\ndataset = "toy"\nbaseline = "alpha"\ncandidate = "gamma"\n'
                    'metrics = ["mae"]\n')
    assert "Paired comparison" not in generate(root, comparisons_file=comp)["toy.md"]
    comp.write_text('[[pair]]\ndataset = "toy"\nbaseline = "alpha"\n')
    from msabench.errors import MsabenchError
    with pytest.raises(MsabenchError, match="lacks candidate, metrics"):
        generate(root, comparisons_file=comp)


def test_probability_mapped_rows_are_marked(results):
    root, _ = results
    res = _result("clf", 1111, 0.7, 1.2)
    res["prediction_kind"] = "probability-mapped"
    write_result(result_path(root, "toy", "default", "clf", "default", 1111), res)
    md = generate(root)["toy.md"]
    assert _row(md, "clf †") and "† A binary classifier" in md
    assert "alpha †" not in md


def test_degenerate_rows_legend_units_and_variant_comparisons(tmp_path):
    """Issue 15: a one-class row is flagged, every variant gets a legend line, reported-only
    keys use the unit of their kind, and variants are compared with their default."""
    from msabench.leaderboard import generate

    root = tmp_path / "results"
    for i, seed in enumerate((1, 2, 3)):
        ok = _result("gamma", seed, 0.70 + 0.01 * i, 1.0 - 0.01 * i)
        ok["config"] = {"train": {"lr": 0.001}}
        write_result(result_path(root, "toy", "default", "gamma", "default", seed), ok)
        var = _result("gamma", seed, 0.75 + 0.012 * i, 0.9 - 0.01 * i, variant="fast")
        var["config"] = {"train": {"lr": 0.01}}  # a v1 file: no stored overrides
        write_result(result_path(root, "toy", "default", "gamma", "fast", seed), var)
        flat = _result("delta", seed, 0.379, 1.3 + 0.01 * i)
        write_result(result_path(root, "toy", "default", "delta", "default", seed), flat)
        new = _result("eps", seed, 0.6 + 0.01 * i, 1.1, variant="tagged")
        new.update({"schema_version": 2, "overrides": {"model.hidden": 64},
                    "prediction_summary": {"positive_fraction": 1.0, "std": 0.1}})
        write_result(result_path(root, "toy", "default", "eps", "tagged", seed), new)
    reported = tmp_path / "reported.toml"
    reported.write_text('[[row]]\ndataset = "toy"\nmethod = "paper"\nsource = "a paper"\n'
                        'metrics = { acc2 = 0.7314, acc2_has0 = 0.75 }\n')
    md = generate(root, reported)["toy.md"]
    assert _row(md, "delta ⚠")  # identical accuracies on every seed
    assert _row(md, "eps (tagged) ⚠")  # predicts one class (recorded positive fraction 1.0)
    assert "⚠" not in _row(md, "gamma ")
    assert "- `gamma (fast)`: train.lr = 0.01" in md  # derived from the default row
    assert "- `eps (tagged)`: model.hidden = 64" in md  # stored in the result
    paper = _row(md, "paper")
    assert "73.14" in paper and "0.7314" not in paper and "75.00" in paper
    assert "**Variants against their method's default**" in md
    row = [line for line in md.splitlines() if line.startswith("| gamma (fast) ")][-1]
    cells = [c.strip() for c in row.split("|")]
    assert cells[2] == "3" and cells[3].startswith("+5.20 (p ") and cells[3].endswith("*")
