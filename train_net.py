#!/usr/bin/env python
"""Train and evaluate MinVIS with detectron2's trainer.

    python train_net.py --config-file configs/youtubevis_2019/video_maskformer2_R50_bs32_8ep_frame.yaml \\
        --num-gpus 8 [--resume] [--eval-only] [KEY VALUE ...]

On a machine without CUDA (or with ``MODEL.DEVICE cpu``), ``--num-gpus N`` starts N CPU
processes joined by gloo instead of NCCL.
"""

import logging

import torch
from detectron2.config import CfgNode
from detectron2.engine import default_argument_parser, default_setup
from detectron2.utils import comm
from detectron2.utils.logger import setup_logger

from minvis.config import build_config
from minvis.engine import Trainer, launch
from minvis.engine.reproducibility import apply_reproducibility
from minvis.modeling import MinVISCheckpointer

logger = logging.getLogger("minvis")


def run_config(args) -> CfgNode:
    """The run's frozen config, with the one device decision of this script: a CUDA
    ``MODEL.DEVICE`` falls back to the CPU where CUDA is not available."""
    cfg = build_config(args.config_file, args.opts)
    if cfg.MODEL.DEVICE.startswith("cuda") and not torch.cuda.is_available():
        cfg.MODEL.DEVICE = "cpu"
    cfg.freeze()
    return cfg


def setup(args) -> CfgNode:
    cfg = run_config(args)
    default_setup(cfg, args)
    apply_reproducibility(cfg)
    setup_logger(output=cfg.OUTPUT_DIR, distributed_rank=comm.get_rank(), name="minvis")
    if cfg.SOLVER.AMP.ENABLED and cfg.MODEL.DEVICE == "cpu":
        logger.info("SOLVER.AMP.ENABLED is ignored on CPU: training in float32.")
    return cfg


def main(args):
    cfg = setup(args)
    if args.eval_only:
        model = Trainer.build_model(cfg)
        MinVISCheckpointer(model, save_dir=cfg.OUTPUT_DIR, strict=True).resume_or_load(
            cfg.MODEL.WEIGHTS, resume=args.resume
        )
        return Trainer.test(cfg, model)
    trainer = Trainer(cfg)
    trainer.resume_or_load(resume=args.resume)
    return trainer.train()


if __name__ == "__main__":
    args = default_argument_parser().parse_args()
    print("Command Line Args:", args)
    launch(
        main,
        args.num_gpus,
        num_machines=args.num_machines,
        machine_rank=args.machine_rank,
        dist_url=args.dist_url,
        args=(args,),
        use_cuda=run_config(args).MODEL.DEVICE.startswith("cuda"),
    )
