"""MLflow tracker: one MLflow run per seed (params, per-epoch metrics, final metrics).

Optional extra: ``pip install msabench[mlflow]``. Where runs go is MLflow's own setting:
``$MLFLOW_TRACKING_URI`` (e.g. ``file:///path/mlruns`` for a local file store, or a tracking
server's URL); the experiment is ``$MSABENCH_MLFLOW_EXPERIMENT`` (default ``msabench``).
"""

from __future__ import annotations

import os
from typing import Any, Mapping

from msabench.api import ComponentMeta
from msabench.config import flatten
from msabench.errors import ConfigError
from msabench.tracking import Tracker


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    value = float(value)
    return value if value == value and abs(value) != float("inf") else None


class MLflowTracker(Tracker):
    """Logs each seed as an MLflow run: config as params, each epoch as it ends as metrics
    with ``step=epoch``, the test metrics at the end."""

    name = "mlflow"
    meta = ComponentMeta(summary="MLflow: one run per seed (config, per-epoch history, test "
                                 "metrics)", license="Apache-2.0 (mlflow)")
    defaults = {"experiment": None, "tracking_uri": None}

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        try:
            import mlflow
        except ImportError:
            raise ConfigError("tracker mlflow needs MLflow: pip install 'msabench[mlflow]' "
                              "(or mlflow-skinny)") from None
        self.mlflow = mlflow
        self.run = None
        self.steps: dict[str, int] = {}

    def start(self, run: Mapping[str, Any]) -> None:
        mlflow = self.mlflow
        uri = self.options["tracking_uri"] or os.environ.get("MLFLOW_TRACKING_URI")
        if uri:
            mlflow.set_tracking_uri(uri)
        mlflow.set_experiment(self.options["experiment"]
                              or os.environ.get("MSABENCH_MLFLOW_EXPERIMENT", "msabench"))
        leaf = run["method"] if run["variant"] == "default" else f"{run['method']}@{run['variant']}"
        self.run = mlflow.start_run(run_name=f"{run['dataset']}/{run['setting']}/{leaf}/"
                                             f"seed-{run['seed']}")
        mlflow.set_tags({f"msabench.{k}": str(run[k]) for k in
                         ("method", "dataset", "setting", "variant", "seed", "config_hash")})
        params = {k: str(v)[:500] for k, v in flatten(run["config"]).items()}
        mlflow.log_params(params)

    def log_epoch(self, stage: str, row: Mapping[str, Any]) -> None:
        step = int(row.get("epoch", self.steps.get(stage, 0) + 1))
        self.steps[stage] = step
        prefix = "" if stage == "train" else f"{stage}."
        values = {f"{prefix}{k}": v for k, v in ((k, _number(v)) for k, v in row.items()
                                                 if k != "epoch") if v is not None}
        if values:
            self.mlflow.log_metrics(values, step=step)

    def finish(self, result: Mapping[str, Any]) -> None:
        values = {}
        for split, metrics in (result.get("metrics") or {}).items():
            for key, value in metrics.items():
                if _number(value) is not None:
                    values[f"{split}.{key}"] = float(value)
        for key in ("best_epoch", "epochs_run", "wall_time_s"):
            if _number(result.get(key)) is not None:
                values[key] = float(result[key])
        self.mlflow.log_metrics(values)
        self.mlflow.end_run()

    def fail(self, error: BaseException) -> None:
        self.mlflow.set_tag("msabench.error", f"{type(error).__name__}: {error}"[:500])
        self.mlflow.end_run(status="FAILED")
