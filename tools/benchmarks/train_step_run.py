"""Time training steps of whichever MinVIS is importable (this project's, or the official
release's from its source tree), so that both run the same script side by side.

    python train_step_run.py CONFIG STEPS HEIGHT WIDTH [KEY VALUE ...]

Builds the model of CONFIG (random weights, seed 0), then runs 1 untimed + STEPS timed
steps of AdamW on one synthetic video of 2 frames with 3 instances (the input format of
both releases' dataset mappers); 2 threads. Prints ``RESULT s_per_step=... peak_rss_mb=...
loss=...``. This project's model gets its speed-ups, as its trainer builds it.
"""

import os
import resource
import sys
import time

import torch
from detectron2.config import get_cfg
from detectron2.modeling import build_model
from detectron2.projects.deeplab import add_deeplab_config
from detectron2.structures import BitMasks, Instances

sys.path.insert(0, os.getcwd())  # the official source tree when run from there
from mask2former import add_maskformer2_config  # noqa: E402
from minvis import add_minvis_config  # noqa: E402

try:  # the official release keeps its video keys in a second package
    from mask2former_video import add_maskformer2_video_config
except ImportError:
    add_maskformer2_video_config = None
try:
    from minvis.modeling.speedups import apply_speedups
except ImportError:  # the official release

    def apply_speedups(model: torch.nn.Module) -> torch.nn.Module:
        return model


def synthetic_video(height: int, width: int, num_frames: int = 2) -> dict:
    """One video dict of ``num_frames`` frames with 3 moving rectangles (one per class)."""
    generator = torch.Generator().manual_seed(0)
    frames, per_frame = [], []
    for t in range(num_frames):
        frames.append(torch.randint(0, 256, (3, height, width), generator=generator).float())
        masks = torch.zeros(3, height, width, dtype=torch.bool)
        for i in range(3):
            top, left = height // 8 * (i + 1) + 4 * t, width // 8 * (i + 1) + 4 * t
            masks[i, top : top + height // 4, left : left + width // 4] = True
        instances = Instances((height, width))
        instances.gt_classes = torch.tensor([0, 1, 2])
        instances.gt_ids = torch.tensor([0, 1, 2])
        instances.gt_masks = BitMasks(masks)
        per_frame.append(instances)
    return {"image": frames, "instances": per_frame, "height": height, "width": width}


def main() -> None:
    config, steps, height, width = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    cfg = get_cfg()
    add_deeplab_config(cfg)
    add_maskformer2_config(cfg)
    if add_maskformer2_video_config is not None:
        add_maskformer2_video_config(cfg)
    add_minvis_config(cfg)
    cfg.merge_from_file(config)
    cfg.merge_from_list(["MODEL.DEVICE", "cpu", "MODEL.WEIGHTS", "", *sys.argv[5:]])
    torch.set_num_threads(2)
    torch.manual_seed(0)
    model = apply_speedups(build_model(cfg)).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    batch = [synthetic_video(height, width)]
    seconds = []
    for _ in range(1 + steps):
        start = time.perf_counter()
        loss = sum(model(batch).values())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        seconds.append(time.perf_counter() - start)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"RESULT s_per_step={sum(seconds[1:]) / steps:.3f} peak_rss_mb={peak:.0f} loss={loss.item():.4f}")


if __name__ == "__main__":
    main()
