"""setup.py used to build detectron2 0.6 from the pb1-detectron2 source release.

Installs the same Python packages as upstream's setup.py (detectron2 plus the
DeepLab, Panoptic-DeepLab and PointRend projects under ``detectron2.projects``)
under the distribution name ``detectron2``, with no compiled extension. Copied
next to the unpacked sources by tools/setup/install_detectron2.py.
"""

import glob
import os

from setuptools import find_packages, setup

PROJECTS = {
    "detectron2.projects.point_rend": "projects/PointRend/point_rend",
    "detectron2.projects.deeplab": "projects/DeepLab/deeplab",
    "detectron2.projects.panoptic_deeplab": "projects/Panoptic-DeepLab/panoptic_deeplab",
}

model_zoo_configs = [
    os.path.relpath(p, "detectron2/model_zoo")
    for p in glob.glob("detectron2/model_zoo/configs/**/*.*", recursive=True)
]

setup(
    name="detectron2",
    version="0.6",
    description="Detectron2 0.6 (Python-only build from the pb1-detectron2 source release)",
    packages=find_packages(exclude=("configs", "tests*", "projects*", "tools*")) + list(PROJECTS),
    package_dir=PROJECTS,
    package_data={"detectron2.model_zoo": model_zoo_configs},
    python_requires=">=3.8",
    install_requires=[
        "Pillow>=7.1,<10",  # detectron2 0.6 reads PIL.Image.LINEAR, removed in Pillow 10
        "matplotlib",
        "pycocotools>=2.0.2",
        "termcolor>=1.1",
        "yacs>=0.1.8",
        "tabulate",
        "cloudpickle",
        "tqdm>4.29.0",
        "tensorboard",
        "fvcore>=0.1.5,<0.1.6",
        "iopath>=0.1.7,<0.1.10",
        "omegaconf>=2.1",
        "hydra-core>=1.1",
    ],
)
