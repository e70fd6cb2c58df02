#!/usr/bin/env bash
# Set up everything MinVIS needs in the current Python environment (idempotent).
#
#   TORCH_SPEC      torch/torchvision to install (default: this project's tested pair;
#                   on a CUDA cluster, pass the build matching your CUDA, or "skip" to keep
#                   the torch you already have)
#   DETECTRON2_SOURCE  auto | git | sdist (see tools/setup/install_detectron2.py)
set -euo pipefail
cd "$(dirname "$0")/../.."

TORCH_SPEC="${TORCH_SPEC:-torch==2.14.1 torchvision==0.29.1}"
PIP="python -m pip install --disable-pip-version-check -q"

if [ "$TORCH_SPEC" != "skip" ]; then
  # shellcheck disable=SC2086
  $PIP $TORCH_SPEC
fi
$PIP setuptools wheel
# Packages compiled against the installed torch: no build isolation, or pip would build
# them against a freshly downloaded torch.
python tools/setup/install_detectron2.py --source "${DETECTRON2_SOURCE:-auto}"
$PIP --no-build-isolation "torch-ms-deform-attn==0.1.1"
$PIP --no-build-isolation -e . -r requirements-dev.txt
python -c "import minvis, detectron2, torch; print('minvis ready: torch', torch.__version__)"
