"""Safe, explicit loading of MinVIS / Mask2Former checkpoints through detectron2.

``.pth`` files go through torch's weights-only unpickler, ``.pkl`` files (detectron2-format
Mask2Former and backbone checkpoints) through one that builds only numpy arrays and plain
containers, refusing anything else before it runs. A missing ``MODEL.WEIGHTS`` is an error,
not a silent start from scratch; ``strict=True`` makes missing keys and shape mismatches one.
Checkpoints and ``last_checkpoint`` are written by the rule of :mod:`minvis.output_paths`: a
failed save (a full disk) leaves no partial ``.pth`` and ``last_checkpoint`` as it was.
"""

import logging
import os
import pickle
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch
from detectron2.checkpoint import DetectionCheckpointer

from minvis.output_paths import atomic_output

from .remote_weights import DOWNLOAD_TIMEOUT_S, is_url, local_weights_path

logger = logging.getLogger(__name__)


class CheckpointLoadError(RuntimeError):
    """A checkpoint file that cannot be loaded safely or does not fit the model."""


# What a detectron2 .pkl checkpoint needs (numpy 1.x and 2.x module paths).
_PICKLE_ALLOWED_GLOBALS = {
    ("collections", "OrderedDict"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "scalar"),
}

# numpy scalars that old training loops leave in scheduler or metadata entries.
_NUMPY_CORE = np._core if hasattr(np, "_core") else np.core
_TORCH_SAFE_GLOBALS = [np.dtype, np.ndarray, _NUMPY_CORE.multiarray.scalar] + [
    type(np.dtype(t)) for t in ("float64", "float32", "int64", "int32", "bool")
]


class _ArraysOnlyUnpickler(pickle.Unpickler):
    def __init__(self, file, path: str):
        super().__init__(file, encoding="latin1")
        self._path = path

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _PICKLE_ALLOWED_GLOBALS:
            return super().find_class(module, name)
        raise CheckpointLoadError(
            f"{self._path}: refusing to unpickle '{module}.{name}'. A .pkl checkpoint may only "
            "contain numpy arrays and plain containers; this file asks for code to be run."
        )


def load_pkl_checkpoint(path: str) -> dict:
    """Load a detectron2-format ``.pkl`` with the arrays-only unpickler."""
    with open(path, "rb") as f:
        try:
            data = _ArraysOnlyUnpickler(f, path).load()
        except CheckpointLoadError:
            raise
        except Exception as e:  # corrupt or truncated file
            raise CheckpointLoadError(f"{path}: not a readable pickle checkpoint ({e})") from e
    if not isinstance(data, dict):
        raise CheckpointLoadError(f"{path}: expected a dict at the top level, got {type(data).__name__}")
    return data


_UNSUPPORTED_GLOBAL = re.compile(r"Unsupported global: GLOBAL (\S+)")


def load_pth_checkpoint(path: str) -> dict:
    """Load a ``.pth`` with torch's weights-only unpickler (plus numpy scalar types); errors say
    what is wrong with the file, not torch's advice to retry with ``weights_only=False``."""
    try:
        with torch.serialization.safe_globals(_TORCH_SAFE_GLOBALS):
            data = torch.load(path, map_location="cpu", weights_only=True)
    except OSError:
        raise
    except Exception as e:  # torch reports corrupt files with many exception types
        unsupported = _UNSUPPORTED_GLOBAL.search(str(e))
        if unsupported:
            raise CheckpointLoadError(
                f"{path}: refusing to load: the file asks for '{unsupported.group(1)}', and a "
                "checkpoint may only hold tensors and plain containers"
            ) from None
        raise CheckpointLoadError(
            f"{path}: not a readable checkpoint (a corrupt, truncated or non-torch file)"
        ) from None
    if not isinstance(data, dict):
        raise CheckpointLoadError(f"{path}: expected a dict at the top level, got {type(data).__name__}")
    return data


class MinVISCheckpointer(DetectionCheckpointer):
    """detectron2's ``DetectionCheckpointer`` with safe loaders and loud failures."""

    def __init__(self, model, save_dir: str = "", *, strict: bool = False, **kwargs):
        super().__init__(model, save_dir, **kwargs)
        self.strict = strict
        self._path = ""

    download_timeout_s = DOWNLOAD_TIMEOUT_S  # for MODEL.WEIGHTS given as a URL

    def load(self, path: str, checkpointables: list[str] | None = None) -> dict:
        self._path = path
        if path and is_url(path):
            path = local_weights_path(path, self.download_timeout_s)
        elif path and "://" not in path and not os.path.isfile(path):
            raise FileNotFoundError(
                f"checkpoint {path} (MODEL.WEIGHTS) does not exist. Pass an existing file with "
                "--opts MODEL.WEIGHTS /path/to/model.pth, or MODEL.WEIGHTS '' to start from scratch."
            )
        return super().load(path, checkpointables)

    def save(self, name: str, **kwargs: Any) -> None:
        """fvcore's ``save``, each file written whole or not at all: ``NAME.pth`` first, then
        ``last_checkpoint`` naming it."""
        if not self.save_dir or not self.save_to_disk:
            return
        checkpointables = {key: obj.state_dict() for key, obj in self.checkpointables.items()}
        data = {"model": self.model.state_dict(), **checkpointables, **kwargs}
        path = Path(self.save_dir) / f"{name}.pth"
        self.logger.info(f"Saving checkpoint to {path}")
        with atomic_output(path) as temporary, open(temporary, "wb") as f:
            try:
                torch.save(data, f)
            except RuntimeError as error:  # torch's message hides the failed write
                if isinstance(error.__context__, OSError):
                    raise error.__context__ from None
                raise
        self.tag_last_checkpoint(path.name)

    def tag_last_checkpoint(self, last_filename_basename: str) -> None:
        with atomic_output(Path(self.save_dir) / "last_checkpoint") as temporary:
            temporary.write_text(last_filename_basename)

    def _load_file(self, filename: str) -> dict:
        if filename.endswith(".pkl"):
            data = load_pkl_checkpoint(filename)
            if "model" in data:
                # detectron2 model-zoo format ({"model": {name: ndarray}, "__author__": ...}).
                data.setdefault("__author__", "unknown")
                return data
            if "blobs" in data:  # Caffe2 detection models
                data = data["blobs"]
            weights = {k: v for k, v in data.items() if not k.endswith("_momentum")}
            return {"model": weights, "__author__": "Caffe2", "matching_heuristics": True}
        data = load_pth_checkpoint(filename)
        return data if "model" in data else {"model": data}

    def _load_model(self, checkpoint: dict):
        incompatible = super()._load_model(checkpoint)
        if not self.strict:
            return incompatible
        # detectron2 drops shape-mismatched weights before loading, so they also come
        # back as missing keys: list them once, as mismatched.
        mismatched = {k for k, _, _ in incompatible.incorrect_shapes}
        missing = [k for k in incompatible.missing_keys if k not in mismatched]
        unexpected = list(incompatible.unexpected_keys)
        if missing or unexpected or mismatched:
            problems = (
                [f"missing: {k}" for k in missing[:3]]
                + [f"unexpected: {k}" for k in unexpected[:3]]
                + [
                    f"shape of {k}: checkpoint {tuple(a)} vs model {tuple(b)}"
                    for k, a, b in incompatible.incorrect_shapes[:3]
                ]
            )
            raise CheckpointLoadError(
                f"{self._path}: the checkpoint does not match the model built from the config "
                f"({len(missing)} missing keys, {len(unexpected)} unexpected keys, "
                f"{len(mismatched)} shape mismatches; e.g. {'; '.join(problems)}). "
                "Use the config file the checkpoint was trained with (dataset = number of classes, "
                "backbone, number of queries, number of decoder layers)."
            )
        return incompatible
