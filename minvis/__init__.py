"""MinVIS: video instance segmentation by tracking the queries of an image model.

Importing the package is light: it loads neither torch nor detectron2, so the tracker
(:mod:`minvis.tracking`), the file formats (:mod:`minvis.ytvis_format`) and the metric
(:mod:`minvis.evaluation.ytvis_metric`) can be used without them. The official entry
points still work: ``from minvis import add_minvis_config`` (or ``build_config``)
registers, on that first use, the meta-architecture ``VideoMaskFormer_frame`` (and,
through :mod:`mask2former`, the image model) and the builtin datasets with detectron2.
Importing :mod:`minvis.modeling` registers the model, :mod:`minvis.data` the datasets.
"""

from typing import Any

__all__ = ["add_minvis_config", "build_config"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from . import config  # registers the model and the builtin datasets

        value = globals()[name] = getattr(config, name)
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
