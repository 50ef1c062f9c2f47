"""``msabench robustness``: evaluate stored checkpoints with a modality removed or noisy."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from .common import RESULTS_DIR, handle_errors


def _floats(text: str, where: str) -> list[float]:
    from ..errors import ConfigError

    try:
        return [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise ConfigError(f"{where} {text!r}: give comma-separated numbers") from None


@handle_errors
def robustness_command(
    results: Annotated[Path, typer.Option(help="results root")] = RESULTS_DIR,
    method: Annotated[Optional[str], typer.Option("--method", "-m", help="only this method")] = None,
    dataset: Annotated[Optional[str], typer.Option("--dataset", "-d", help="only this dataset")] = None,
    setting: Annotated[Optional[str], typer.Option(help="only this setting")] = None,
    variant: Annotated[Optional[str], typer.Option(help="only this variant (e.g. default, lf0.4)")] = None,
    snrs: Annotated[str, typer.Option(help="Gaussian-noise SNRs in dB, per modality")] = "20,10,0",
    word_dropout: Annotated[str, typer.Option(
        help="word-dropout probabilities for text inputs")] = "0.1,0.3",
    data_dir: Annotated[Optional[Path], typer.Option(help="where the dataset files are (as for run)")] = None,
    threads: Annotated[Optional[int], typer.Option(help="torch CPU threads")] = None,
    force: Annotated[bool, typer.Option("--force", help="re-evaluate records that exist")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="no progress lines")] = False,
) -> None:
    """Evaluate every stored checkpoint (msabench run --save-checkpoint) on test with each
    modality removed, with Gaussian noise at several SNRs, and with word dropout; writes
    robustness-seed-N.json beside each result (msabench leaderboard shows them)."""
    from rich.console import Console

    from ..errors import MsabenchError
    from ..progress import Progress
    from ..robustness import find_results, run
    from ..training import set_threads

    set_threads(threads)
    paths = find_results(results, method, dataset, setting, variant)
    if not paths:
        raise MsabenchError(f"no result file with a checkpoint under {results}"
                            + "".join(f" {k}={v}" for k, v in (("method", method),
                                      ("dataset", dataset), ("setting", setting),
                                      ("variant", variant)) if v)
                            + "; train with `msabench run ... --save-checkpoint`")
    console = Console()
    progress = Progress(quiet=True)

    def report(target: Path, record: dict) -> None:
        if quiet:
            return
        bad = [p["name"] for p in record["perturbations"] if p["status"] != "ok"]
        console.print(f"{target}: {len(record['perturbations'])} perturbation(s)"
                      + (f"; unsupported: {', '.join(bad)}" if bad else "")
                      + ("" if record["clean_matches_result"] else
                         " [yellow](clean metrics differ from the result file)[/]"),
                      highlight=False)

    done = run(paths, data_dir=data_dir, snrs=_floats(snrs, "--snrs"),
               word_dropout=_floats(word_dropout, "--word-dropout"), force=force,
               progress=progress, on_done=report)
    ran = sum(status == "ran" for _, status in done)
    console.print(f"{len(done)} checkpoint(s): {ran} evaluated, {len(done) - ran} already "
                  "done; `msabench leaderboard` shows them")


def register(app: typer.Typer) -> None:
    app.command("robustness")(robustness_command)
