"""The builtin video datasets, registered (lazily: no file is read) under the official names.

Files are expected under ``$DETECTRON2_DATASETS`` (default ``./datasets``) as listed in
``BUILTIN_SPLITS``; local splits in ``{ytvis_2019,ytvis_2021,ovis}/splits/`` (written by
``tools/data/split_dataset.py``) are registered as ``{dataset}_local{train,val}``; datasets of
your own from ``$MINVIS_DATASETS`` (``NAME=JSON:IMAGE_ROOT,...``, see :mod:`minvis.data.custom`).
"""

import os
from collections.abc import Iterable, Sequence
from typing import Any

from .custom import register_env_datasets
from .split import SPLIT_FILES, register_split
from .synthetic import SYNTHETIC_CATEGORIES
from .ytvis import register_ytvis_instances, ytvis_metadata

Color = tuple[int, int, int]


def _categories(names_and_colors: Sequence[tuple[str, Color]]) -> list[dict[str, Any]]:
    """Category dicts with the official ids 1..K, in table order."""
    return [
        {"id": i, "name": name, "color": list(color)}
        for i, (name, color) in enumerate(names_and_colors, start=1)
    ]


YTVIS_2019_CATEGORIES = _categories([
    ("person", (220, 20, 60)), ("giant_panda", (0, 82, 0)), ("lizard", (119, 11, 32)),
    ("parrot", (165, 42, 42)), ("skateboard", (134, 134, 103)), ("sedan", (0, 0, 142)),
    ("ape", (255, 109, 65)), ("dog", (0, 226, 252)), ("snake", (5, 121, 0)),
    ("monkey", (0, 60, 100)), ("hand", (250, 170, 30)), ("rabbit", (100, 170, 30)),
    ("duck", (179, 0, 194)), ("cat", (255, 77, 255)), ("cow", (120, 166, 157)),
    ("fish", (73, 77, 174)), ("train", (0, 80, 100)), ("horse", (182, 182, 255)),
    ("turtle", (0, 143, 149)), ("bear", (174, 57, 255)), ("motorbike", (0, 0, 230)),
    ("giraffe", (72, 0, 118)), ("leopard", (255, 179, 240)), ("fox", (0, 125, 92)),
    ("deer", (209, 0, 151)), ("owl", (188, 208, 182)), ("surfboard", (145, 148, 174)),
    ("airplane", (106, 0, 228)), ("truck", (0, 0, 70)), ("zebra", (199, 100, 0)),
    ("tiger", (166, 196, 102)), ("elephant", (110, 76, 0)), ("snowboard", (133, 129, 255)),
    ("boat", (0, 0, 192)), ("shark", (183, 130, 88)), ("mouse", (130, 114, 135)),
    ("frog", (107, 142, 35)), ("eagle", (0, 228, 0)), ("earless_seal", (174, 255, 243)),
    ("tennis_racket", (255, 208, 186)),
])  # fmt: skip

YTVIS_2021_CATEGORIES = _categories([
    ("airplane", (106, 0, 228)), ("bear", (174, 57, 255)), ("bird", (255, 109, 65)),
    ("boat", (0, 0, 192)), ("car", (0, 0, 142)), ("cat", (255, 77, 255)),
    ("cow", (120, 166, 157)), ("deer", (209, 0, 151)), ("dog", (0, 226, 252)),
    ("duck", (179, 0, 194)), ("earless_seal", (174, 255, 243)), ("elephant", (110, 76, 0)),
    ("fish", (73, 77, 174)), ("flying_disc", (250, 170, 30)), ("fox", (0, 125, 92)),
    ("frog", (107, 142, 35)), ("giant_panda", (0, 82, 0)), ("giraffe", (72, 0, 118)),
    ("horse", (182, 182, 255)), ("leopard", (255, 179, 240)), ("lizard", (119, 11, 32)),
    ("monkey", (0, 60, 100)), ("motorbike", (0, 0, 230)), ("mouse", (130, 114, 135)),
    ("parrot", (165, 42, 42)), ("person", (220, 20, 60)), ("rabbit", (100, 170, 30)),
    ("shark", (183, 130, 88)), ("skateboard", (134, 134, 103)), ("snake", (5, 121, 0)),
    ("snowboard", (133, 129, 255)), ("squirrel", (188, 208, 182)),
    ("surfboard", (145, 148, 174)), ("tennis_racket", (255, 208, 186)),
    ("tiger", (166, 196, 102)), ("train", (0, 80, 100)), ("truck", (0, 0, 70)),
    ("turtle", (0, 143, 149)), ("whale", (0, 228, 0)), ("zebra", (199, 100, 0)),
])  # fmt: skip

# "Vehical" is the dataset's own spelling.
OVIS_CATEGORIES = _categories([
    ("Person", (220, 20, 60)), ("Bird", (255, 109, 65)), ("Cat", (255, 77, 255)),
    ("Dog", (0, 226, 252)), ("Horse", (182, 182, 255)), ("Sheep", (0, 125, 92)),
    ("Cow", (120, 166, 157)), ("Elephant", (110, 76, 0)), ("Bear", (174, 57, 255)),
    ("Zebra", (199, 100, 0)), ("Giraffe", (72, 0, 118)), ("Poultry", (179, 0, 194)),
    ("Giant_panda", (0, 82, 0)), ("Lizard", (119, 11, 32)), ("Parrot", (165, 42, 42)),
    ("Monkey", (0, 60, 100)), ("Rabbit", (100, 170, 30)), ("Tiger", (166, 196, 102)),
    ("Fish", (73, 77, 174)), ("Turtle", (0, 143, 149)), ("Bicycle", (134, 134, 103)),
    ("Motorcycle", (0, 0, 230)), ("Airplane", (106, 0, 228)), ("Boat", (0, 0, 192)),
    ("Vehical", (0, 0, 70)),
])  # fmt: skip

# Official split name -> (image root, annotation file), relative to the datasets root.
_YTVIS_SPLITS = {"train": "train", "val": "valid", "test": "test"}
BUILTIN_SPLITS: dict[str, tuple[str, str, list[dict[str, Any]]]] = {
    **{
        f"ytvis_{year}_{split}": (
            f"ytvis_{year}/{folder}/JPEGImages",
            f"ytvis_{year}/{folder}.json",
            categories,
        )
        for year, categories in (("2019", YTVIS_2019_CATEGORIES), ("2021", YTVIS_2021_CATEGORIES))
        for split, folder in _YTVIS_SPLITS.items()
    },
    **{
        f"ovis_{split}": (f"ovis/{folder}", f"ovis/annotations/annotations_{folder}.json", OVIS_CATEGORIES)
        for split, folder in _YTVIS_SPLITS.items()
    },
}


def datasets_root() -> str:
    """``$DETECTRON2_DATASETS``, or ``datasets`` (relative to the working directory)."""
    return os.getenv("DETECTRON2_DATASETS", "datasets")


SYNTHETIC_PREFIX, SYNTHETIC_SPLITS = "synthetic_ytvis", ("train", "val")
LOCAL_SPLIT_DATASETS = ("ytvis_2019", "ytvis_2021", "ovis")


def builtin_dataset_names() -> list[str]:
    """Every name registered by ``import minvis.data`` itself (not from ``$MINVIS_DATASETS``)."""
    return [
        *BUILTIN_SPLITS,
        *(f"{dataset}_{suffix}" for dataset in LOCAL_SPLIT_DATASETS for suffix in SPLIT_FILES),
        *(f"{SYNTHETIC_PREFIX}_{split}" for split in SYNTHETIC_SPLITS),
    ]


def register_all_builtin(root: str) -> None:
    """Register YouTube-VIS 2019/2021 and OVIS (train/val/test and the local splits) under
    ``root``, and the datasets of ``$MINVIS_DATASETS``."""
    for name, (image_root, json_file, categories) in BUILTIN_SPLITS.items():
        register_ytvis_instances(
            name,
            ytvis_metadata(categories),
            os.path.join(root, json_file),
            os.path.join(root, image_root),
        )
    for dataset in LOCAL_SPLIT_DATASETS:
        image_root, _, categories = BUILTIN_SPLITS[f"{dataset}_train"]
        register_split(
            dataset,
            ytvis_metadata(categories),
            os.path.join(root, dataset, "splits"),
            os.path.join(root, image_root),
        )
    register_env_datasets(reserved=builtin_dataset_names())


def register_synthetic_ytvis(
    root: str, prefix: str = SYNTHETIC_PREFIX, splits: Iterable[str] = SYNTHETIC_SPLITS
) -> list[str]:
    """Register the splits of ``tools/data/make_synthetic_ytvis.py --root ROOT`` as ``{prefix}_{split}``."""
    names = []
    for split in splits:
        name = f"{prefix}_{split}"
        register_ytvis_instances(
            name,
            ytvis_metadata(SYNTHETIC_CATEGORIES),
            os.path.join(root, f"{split}.json"),
            os.path.join(root, split, "JPEGImages"),
        )
        names.append(name)
    return names
