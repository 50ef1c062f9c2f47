"""msabench: a plugin-based benchmark toolkit for multimodal sentiment analysis.

Importing this package is cheap (no torch); plugin authors need only ``hookimpl``::

    from msabench import hookimpl
"""

from .hookspecs import hookimpl

__version__ = "0.1.0"
__all__ = ["hookimpl", "__version__"]
