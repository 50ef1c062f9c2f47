"""``msabench run``: train a method on a dataset for one or more seeds."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from .common import RESULTS_DIR, handle_errors


def _seeds(text: str) -> list[int]:
    from ..errors import ConfigError

    try:
        seeds = [int(s) for s in text.replace(" ", "").split(",") if s]
    except ValueError:
        raise ConfigError(f"--seeds {text!r}: give comma-separated integers, e.g. 1111,1112,1113")
    return _check_seeds(seeds, f"--seeds {text!r}")


def _check_seeds(seeds: list[int], where: str) -> list[int]:
    from ..errors import ConfigError

    if not seeds or len(set(seeds)) != len(seeds):
        raise ConfigError(f"{where}: give distinct integers, e.g. 1111,1112,1113")
    bad = [s for s in seeds if not 0 <= s < 2**63]
    if bad:
        raise ConfigError(f"{where}: seed {bad[0]} is outside [0, 2^63); use a smaller "
                          "non-negative integer")
    return seeds


def _from_config(file_cfg: dict, config: Optional[Path], method: Optional[str],
                 dataset: Optional[str], seeds: Optional[str]) -> tuple[str, str, list[int]]:
    """CLI values win; the config file's top-level method/dataset/seeds fill the gaps."""
    from ..config import DEFAULT_SEEDS
    from ..errors import ConfigError

    method = method or file_cfg.get("method")
    dataset = dataset or file_cfg.get("dataset")
    if not method or not dataset:
        missing = " and ".join(n for n, v in (("--method", method), ("--dataset", dataset)) if not v)
        raise ConfigError(f"give {missing} (or method = \"...\" / dataset = \"...\" in the "
                          "--config file)")
    if seeds is not None:
        return method, dataset, _seeds(seeds)
    from_file = file_cfg.get("seeds", list(DEFAULT_SEEDS))
    if not isinstance(from_file, list) or not all(
            isinstance(x, int) and not isinstance(x, bool) for x in from_file):
        raise ConfigError(f"{config}: seeds must be a list of integers, e.g. seeds = [1111, 1112]")
    return method, dataset, _check_seeds(list(from_file), f"{config}: seeds")


@handle_errors
def run_command(
    method: Annotated[Optional[str], typer.Option(
        "--method", "-m", help="method name (msabench list methods); else `method` in --config")] = None,
    dataset: Annotated[Optional[str], typer.Option(
        "--dataset", "-d", help="dataset name (msabench list datasets); else `dataset` in --config")] = None,
    seeds: Annotated[Optional[str], typer.Option(
        help="comma-separated seeds, one result file per seed; else `seeds` in --config, else "
             "1111")] = None,
    epochs: Annotated[Optional[int], typer.Option(
        help="cap every stage at N epochs: train.epochs and each pretraining stage's epoch "
             "keys (e.g. pretrain.dec.stage1_epochs); the run's first line lists them")] = None,
    smoke: Annotated[bool, typer.Option(
        "--smoke", help="check the pipeline in seconds: every stage 1 epoch on at most 64 "
                        "samples per split, always re-run, results under .msabench-smoke/ "
                        "(never the leaderboards) unless --out is given")] = False,
    threads: Annotated[Optional[int], typer.Option(
        help="torch CPU threads (default: torch's count capped at the CPUs this process may "
             "use); bit-identical reruns need the same count")] = None,
    config: Annotated[Optional[Path], typer.Option("--config", "-c", help="TOML config file")] = None,
    set_: Annotated[Optional[list[str]], typer.Option(
        "--set", "-s", help="override a config key, e.g. --set train.lr=1e-4 (repeatable)")] = None,
    setting: Annotated[Optional[str], typer.Option(help="dataset setting (e.g. aligned); default: the dataset's")] = None,
    modalities: Annotated[Optional[str], typer.Option(help="modality subset for ablations, e.g. ta")] = None,
    label_fraction: Annotated[Optional[float], typer.Option(
        help="keep the labels of a seeded, stratified fraction of train (0 < F <= 1); the "
             "rest stay unlabelled for pretrainers (= --set data.label_fraction=F)")] = None,
    normalize: Annotated[Optional[str], typer.Option(
        help="none, zscore, minmax or minmax-zscore, per modality with train-split statistics "
             "(= --set data.normalize=SCHEME)")] = None,
    max_length: Annotated[Optional[int], typer.Option(
        help="truncate or zero-pad every modality to N steps (= --set data.max_length=N; per "
             "modality: --set data.max_length.text=N)")] = None,
    data_dir: Annotated[Optional[Path], typer.Option(help="where the dataset files are (else $MSABENCH_DATA_DIR or the config file)")] = None,
    model_dir: Annotated[Optional[Path], typer.Option(help="where downloaded checkpoints are (else model_dir in --config, $MSABENCH_MODEL_DIR, <cache>/models; msabench models)")] = None,
    out: Annotated[Path, typer.Option(help="results root")] = RESULTS_DIR,
    tag: Annotated[Optional[str], typer.Option(help="name this configuration variant in results and leaderboards")] = None,
    label_fractions: Annotated[Optional[str], typer.Option(
        help="comma-separated label fractions, e.g. 0.05,0.1,0.2,0.4,1.0: one variant per "
             "fraction (a label-efficiency curve in the leaderboard)")] = None,
    save_checkpoint: Annotated[Optional[bool], typer.Option(
        "--save-checkpoint/--no-save-checkpoint",
        help="write each seed's selected weights beside its result (seed-N.safetensors; "
             "msabench robustness reads them); default: train.save_checkpoint of the config "
             "(false)")] = None,
    tracker: Annotated[Optional[list[str]], typer.Option(
        help="send each seed's config, history and metrics to a registered tracker, e.g. "
             "mlflow (repeatable; also $MSABENCH_TRACKERS)")] = None,
    vectorize: Annotated[bool, typer.Option(
        "--vectorize", help="train the seeds as one stacked model (torch.func.vmap) in one "
                            "pass; methods without support train seed by seed "
                            "(= --set train.vectorize=true; docs/vectorize.md)")] = False,
    force: Annotated[bool, typer.Option("--force", help="re-run seeds whose result file exists")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="no progress display")] = False,
) -> None:
    """Train METHOD on DATASET (validation-selected, early-stopped), evaluate on test, and write
    one result file per seed. Existing results are skipped unless --force."""
    from rich.console import Console

    from ..config import deep_merge, load_config_file, parse_overrides
    from ..runner import RunSpec, parse_modalities, run, summarize

    # typed flags become config values as data; only --set strings are parsed (once)
    data: dict = {}
    if setting:
        data["setting"] = setting
    if modalities:
        data["modalities"] = parse_modalities(modalities)
    if label_fraction is not None:
        data["label_fraction"] = float(label_fraction)
    if normalize is not None:
        data["normalize"] = normalize
    if max_length is not None:
        data["max_length"] = int(max_length)
    overrides = deep_merge(parse_overrides(set_ or []), {"data": data} if data else {})
    if vectorize:
        overrides = deep_merge(overrides, {"train": {"vectorize": True}})
    file_cfg = load_config_file(config) if config else {}
    from ..models import resolve_model_dir, use_model_dir

    use_model_dir(resolve_model_dir(model_dir, file_cfg))
    method, dataset, seed_list = _from_config(file_cfg, config, method, dataset, seeds)
    from ..grid import fraction_tag, parse_fractions

    fractions: list[Optional[float]] = [None]
    if label_fractions is not None:
        from ..errors import ConfigError

        if label_fraction is not None:
            raise ConfigError("give --label-fraction or --label-fractions, not both")
        fractions = list(parse_fractions(label_fractions, "--label-fractions"))
    console = Console()
    for fraction in fractions:
        over, run_tag = overrides, tag
        if fraction is not None:
            over = deep_merge(overrides, {"data": {"label_fraction": fraction}})
            run_tag = fraction_tag(tag, fraction)
        spec = RunSpec(method=method, dataset=dataset, seeds=seed_list, config_file=config,
                       file_config=file_cfg, overrides=over, epochs=epochs,
                       data_dir=data_dir, out=out, force=force, tag=run_tag, quiet=quiet,
                       smoke=smoke, threads=threads, save_checkpoint=save_checkpoint,
                       trackers=tracker or [])
        outcomes = run(spec)
        stats = summarize(outcomes)
        what = f" (label fraction {fraction:g})" if fraction is not None else ""
        console.print(f"[bold]{method}[/] on [bold]{dataset}[/]{what}: {len(outcomes)} seed(s) "
                      f"({sum(o.status == 'ran' for o in outcomes)} run, "
                      f"{sum(o.status == 'skipped' for o in outcomes)} skipped); results in "
                      f"{spec.out}")
        for key, (mean, std, n) in stats.items():
            console.print(f"  test {key:<10} {mean:.4f} ± {std:.4f} (n={n})")


def register(app: typer.Typer) -> None:
    app.command("run")(run_command)
