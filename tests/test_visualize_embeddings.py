"""tools/analysis/visualize_embeddings.py writes a t-SNE plot for a tiny random model on a synthetic video."""

import importlib.util
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TOOL = REPO / "tools" / "analysis" / "visualize_embeddings.py"
TINY = REPO / "configs" / "tiny" / "minvis_tiny_synthetic.yaml"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def load_tool():
    spec = importlib.util.spec_from_file_location("visualize_embeddings", TOOL)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while it executes
    spec.loader.exec_module(module)
    return module


def test_png_is_written(tmp_path: Path) -> None:
    tool = load_tool()
    output = tmp_path / "plots" / "embeddings.png"
    argv = [
        "--config-file", str(TINY), "--output", str(output),
        "--synthetic", "lookalike", "--frames", "3", "--height", "48", "--width", "64",
        "--tsne-method", "exact",
        "INPUT.MIN_SIZE_TEST", "48", "MODEL.MASK_FORMER.TRAIN_NUM_POINTS", "64",
    ]  # fmt: skip
    assert tool.main(argv) == 0
    assert output.read_bytes()[:8] == PNG_MAGIC


def test_queries_are_assigned_to_present_instances_only() -> None:
    import torch
    from detectron2.modeling import build_model

    from minvis.config import build_config
    from minvis.data.synthetic import SyntheticSpec
    from minvis.tracking import FrameOutputs

    tool = load_tool()
    cfg = build_config(str(TINY), ["INPUT.MIN_SIZE_TEST", 48, "MODEL.MASK_FORMER.TRAIN_NUM_POINTS", 64])
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    video = tool.synthetic_video("reentry", SyntheticSpec(num_frames=4, height=48, width=64), seed=0)
    embeddings, assignments = tool.query_assignments(model, cfg, video, seed=0)
    num_queries = cfg.MODEL.MASK_FORMER.NUM_OBJECT_QUERIES
    assert embeddings.shape == (4, num_queries, cfg.MODEL.MASK_FORMER.HIDDEN_DIM)
    assert assignments.shape == (4, num_queries)
    for t in range(4):
        present = set(video.masks[:, t].reshape(len(video.masks), -1).any(axis=1).nonzero()[0].tolist())
        assigned = [g for g in assignments[t].tolist() if g != tool.UNASSIGNED]
        assert sorted(assigned) == sorted(present)  # each present instance gets one query
    # A frame without any visible instance leaves every query unassigned.
    q = num_queries
    empty = tool.frame_assignment(
        model.criterion.matcher,
        FrameOutputs(torch.zeros(q, 5), torch.zeros(q, 12, 16), torch.zeros(q, 1), (48, 64), (64, 64)),
        video.masks[:, 0] & False, video.labels,
    )  # fmt: skip
    assert (empty == tool.UNASSIGNED).all()
