"""detectron2 is a real pip-managed distribution and degrades clearly without its C++ ops."""

import importlib.metadata
import importlib.util

import pytest


def test_detectron2_is_a_pip_distribution():
    # Installed under its own name, whatever its version (the 0.6 release and upstream both say 0.6).
    distribution = importlib.metadata.distribution("detectron2")
    assert distribution.metadata["Name"] == "detectron2" and distribution.version


def test_detectron2_packages_and_projects_import():
    import detectron2.layers  # noqa: F401
    import detectron2.projects.deeplab  # noqa: F401
    import detectron2.projects.point_rend  # noqa: F401


def test_environment_report_works():
    from detectron2.utils.collect_env import collect_env_info

    report = collect_env_info()
    assert "detectron2" in report and "PyTorch" in report


@pytest.mark.skipif(
    importlib.util.find_spec("detectron2._C").origin.endswith(".so"),
    reason="detectron2 was built with its C++ extension (git install): the ops exist",
)
def test_missing_compiled_op_raises_a_clear_error():
    import torch
    from detectron2.layers import ROIAlignRotated

    layer = ROIAlignRotated(output_size=(2, 2), spatial_scale=1.0, sampling_ratio=0)
    with pytest.raises(NotImplementedError, match="roi_align_rotated_forward.*without its C\\+\\+"):
        layer(torch.zeros(1, 1, 4, 4), torch.tensor([[0.0, 2.0, 2.0, 2.0, 2.0, 0.0]]))
