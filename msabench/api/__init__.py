"""The interfaces every plugin implements. Importing this module imports torch."""

from .dataset import (CONVENTIONS, MODALITIES, SPLITS, Batch, DataInfo, Dataset, DatasetMeta,
                      LoadedDataset, SplitData)
from .composed import ComposedMethod
from .extractor import Extractor, Features
from .fusion import Fusion, masked_mean
from .meta import ComponentMeta
from .method import Components, Method
from .metric import Metric
from .pretrainer import Pretrainer

__all__ = [
    "CONVENTIONS", "MODALITIES", "SPLITS", "Batch", "ComponentMeta", "Components",
    "ComposedMethod", "DataInfo",
    "Dataset", "DatasetMeta", "Extractor", "Features", "Fusion", "LoadedDataset", "Method",
    "Metric", "Pretrainer", "SplitData", "masked_mean",
]
