"""The interfaces every plugin implements. Importing this module imports torch."""

from .context import (Evaluation, FitResult, Progress, Recipe, RunContext, Schedule,
                      SilentProgress, Task)
from .dataset import (CONVENTIONS, MODALITIES, SPLITS, Batch, DataInfo, Dataset, DatasetMeta,
                      LoadedDataset, MediaRef, SplitData)
from .composed import ComposedMethod
from .extractor import POOLINGS, Extractor, Features, pool
from .fusion import Fusion, masked_mean
from .meta import ComponentMeta
from .method import TARGETS, Components, Method
from .metric import Metric
from .pretrainer import Pretrainer
from ..models import ModelNeed

__all__ = [
    "CONVENTIONS", "MODALITIES", "POOLINGS", "SPLITS", "TARGETS", "Batch", "ComponentMeta",
    "Components", "ComposedMethod", "DataInfo", "Dataset", "DatasetMeta", "Evaluation",
    "Extractor", "Features", "FitResult", "Fusion", "LoadedDataset", "MediaRef", "Method",
    "Metric", "ModelNeed", "Pretrainer", "Progress", "Recipe", "RunContext", "Schedule", "SilentProgress",
    "SplitData", "Task", "masked_mean", "pool",
]
