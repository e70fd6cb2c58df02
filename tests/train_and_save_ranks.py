#!/usr/bin/env python
"""Test helper: train as ``train_net.py`` does on CPU processes, then save every rank's weights.

    python tests/train_and_save_ranks.py --num-gpus 2 --config-file CFG [KEY VALUE ...]

Each process is set up and trained exactly as by ``train_net.py --num-gpus N`` on a
machine without CUDA (gloo processes, the same Trainer, rank 0 writing the checkpoints);
when training ends, rank ``R`` also writes its model's state dict to
``OUTPUT_DIR/rank{R}_state_dict.pth``, so a test can compare the replicas.
"""

import sys
from pathlib import Path

import torch
from detectron2.engine import default_argument_parser
from detectron2.utils import comm
from torch.nn.parallel import DistributedDataParallel

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import train_net  # noqa: E402
from minvis.engine import Trainer, launch  # noqa: E402


def train_and_save(args) -> None:
    cfg = train_net.setup(args)
    trainer = Trainer(cfg)
    trainer.resume_or_load(resume=args.resume)
    trainer.train()
    model = trainer.model.module if isinstance(trainer.model, DistributedDataParallel) else trainer.model
    torch.save(model.state_dict(), Path(cfg.OUTPUT_DIR, f"rank{comm.get_rank()}_state_dict.pth"))


if __name__ == "__main__":
    args = default_argument_parser().parse_args()
    launch(train_and_save, args.num_gpus, dist_url=args.dist_url, args=(args,), use_cuda=False)
