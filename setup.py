"""Install the ``mask2former`` and ``minvis`` packages (``pip install -e .``).

torch/torchvision and detectron2 are installed beforehand (see README): detectron2 is
not on PyPI under its own name and both need the right build for the machine.
"""

from pathlib import Path

from setuptools import find_packages, setup

requirements = [
    line.strip()
    for line in Path(__file__).with_name("requirements.txt").read_text().splitlines()
    if line.strip() and not line.startswith("#")
]

setup(
    name="minvis",
    version="0.1.0",
    description="MinVIS: video instance segmentation by tracking image-model queries",
    python_requires=">=3.11",
    packages=find_packages(include=["mask2former*", "minvis*"]),
    install_requires=requirements,
)
