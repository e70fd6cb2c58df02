#!/usr/bin/env python
"""Train and evaluate MinVIS with detectron2's trainer.

Without CUDA, ``--num-gpus N`` starts N CPU processes joined by gloo. ``--eval-only`` keeps a
training folder's ``config.yaml`` and writes its own as ``config_eval.yaml``. Bad data, configs
and checkpoints are reported in one line naming the file (exit code 2; ``--debug``: traceback).
"""

import logging
import sys
import warnings
from pathlib import Path

import torch
from detectron2.config import CfgNode
from detectron2.engine import default_argument_parser, default_setup
from detectron2.utils import comm
from detectron2.utils.logger import setup_logger

from minvis.config import build_config
from minvis.engine import Trainer, launch
from minvis.engine.reproducibility import apply_reproducibility
from minvis.modeling import CheckpointLoadError, MinVISCheckpointer
from minvis.output_paths import OutputPathError, check_outputs
from minvis.ytvis_format import YTVISFormatError

logger = logging.getLogger("minvis")
BAD_INPUT = 2
FINAL_CHECKPOINT = "model_final.pth"
EVAL_CONFIG_NAME = "config_eval.yaml"
# What a user can fix; anything else is a bug and keeps its traceback.
USER_ERRORS = (OSError, YTVISFormatError, CheckpointLoadError, OutputPathError)


def run_config(args) -> CfgNode:
    """The run's frozen config; a CUDA ``MODEL.DEVICE`` falls back to the CPU without CUDA."""
    cfg = build_config(args.config_file, args.opts)
    if cfg.MODEL.DEVICE.startswith("cuda") and not torch.cuda.is_available():
        cfg.MODEL.DEVICE = "cpu"
    cfg.freeze()
    return cfg


def check_output_dir(cfg: CfgNode, args) -> None:
    """A finished run is continued (``--resume``) or replaced (``--overwrite``), never
    silently trained over; the weights a run starts from are never its output."""
    if args.eval_only or args.resume:
        return
    final = Path(cfg.OUTPUT_DIR) / FINAL_CHECKPOINT
    if final.exists() and not args.overwrite:
        raise OutputPathError(
            f"{cfg.OUTPUT_DIR} holds a finished training run ({final}); pass --resume to continue it, "
            "--overwrite to train again into it, or choose another OUTPUT_DIR"
        )
    weights = [cfg.MODEL.WEIGHTS] if cfg.MODEL.WEIGHTS and "://" not in cfg.MODEL.WEIGHTS else []
    check_outputs([final], weights, overwrite=True)


def setup(args) -> CfgNode:
    cfg = run_config(args)
    check_output_dir(cfg, args)
    config_yaml = Path(cfg.OUTPUT_DIR) / "config.yaml"
    kept = config_yaml.read_bytes() if args.eval_only and config_yaml.is_file() else None
    default_setup(cfg, args)  # writes OUTPUT_DIR/config.yaml
    if kept is not None and comm.is_main_process():
        config_yaml.replace(config_yaml.with_name(EVAL_CONFIG_NAME))
        config_yaml.write_bytes(kept)
    apply_reproducibility(cfg)
    setup_logger(output=cfg.OUTPUT_DIR, distributed_rank=comm.get_rank(), name="minvis")
    if cfg.SOLVER.AMP.ENABLED and cfg.MODEL.DEVICE == "cpu":
        warnings.warn(
            "SOLVER.AMP.ENABLED is ignored on CPU: training in float32", RuntimeWarning, stacklevel=2
        )
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


def parse_args(argv: list[str] | None = None):
    parser = default_argument_parser()
    parser.add_argument(
        "--overwrite", action="store_true", help="train again into an OUTPUT_DIR holding a finished run"
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks of data/checkpoint errors")
    return parser.parse_args(argv)


def cli(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    print("Command Line Args:", args)
    try:
        launch(
            main,
            args.num_gpus,
            num_machines=args.num_machines,
            machine_rank=args.machine_rank,
            dist_url=args.dist_url,
            args=(args,),
            use_cuda=run_config(args).MODEL.DEVICE.startswith("cuda"),
        )
    except USER_ERRORS as error:
        if args.debug:
            raise
        print(f"train_net.py: error: {error}", file=sys.stderr)
        return BAD_INPUT
    return 0


if __name__ == "__main__":
    sys.exit(cli())
