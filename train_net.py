#!/usr/bin/env python
"""Train and evaluate MinVIS with detectron2's trainer.

Without CUDA, ``--num-gpus N`` starts N CPU processes joined by gloo. ``--eval-only`` keeps a
training folder's ``config.yaml`` and writes its own as ``config_eval.yaml``. Bad arguments,
configs, data and checkpoints are reported in one line naming the file or key (exit code 2;
``--debug``: traceback).
"""

import contextlib
import logging
import re
import sys
import warnings
from collections import Counter
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import torch
import yaml
from detectron2.config import CfgNode
from detectron2.engine import default_argument_parser, default_setup
from detectron2.utils import comm
from detectron2.utils.logger import setup_logger
from torch import nn

from minvis.config import build_config
from minvis.engine import Trainer, launch
from minvis.engine.launch import DEFAULT_TIMEOUT, LaunchError, tcp_address
from minvis.engine.reproducibility import apply_reproducibility
from minvis.modeling import CheckpointLoadError, MinVISCheckpointer
from minvis.modeling.exported import build_exported_model, is_exported
from minvis.modeling.remote_weights import local_file
from minvis.output_paths import OutputPathError, check_outputs, lock_output_dir
from minvis.tracking import MATCHING_MODES
from minvis.ytvis_format import YTVISFormatError

logger = logging.getLogger("minvis")
BAD_INPUT = 2
FINAL_CHECKPOINT = "model_final.pth"
LAST_CHECKPOINT = "last_checkpoint"
EVAL_CONFIG_NAME = "config_eval.yaml"
EVAL_OUTPUTS = ("results.json", "results.zip", "metrics.json")  # the evaluator's, per dataset folder
DEVICE_TYPES = ("cpu", "cuda", "mps")
UNKNOWN_KEY = re.compile(r"Non-existent (?:config )?key: (\S+)")  # yacs' words


class ConfigError(ValueError):
    """A command-line argument, config file or config value that cannot run (one line naming it)."""


# What a user can fix; anything else is a bug and keeps its traceback.
USER_ERRORS = (OSError, YTVISFormatError, CheckpointLoadError, OutputPathError, ConfigError)


@contextlib.contextmanager
def config_errors(source: str) -> Iterator[None]:
    """yacs' and PyYAML's errors while merging ``source`` as one line naming it."""
    try:
        yield
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f"{mark.name}: line {mark.line + 1}, column {mark.column + 1}" if mark else source
        raise ConfigError(f"{where}: invalid YAML ({getattr(error, 'problem', None) or error})") from None
    except (KeyError, ValueError, AssertionError, TypeError, AttributeError) as error:
        message = str(error.args[0]) if error.args else type(error).__name__
        message = UNKNOWN_KEY.sub(r"unknown config key \1", message)
        raise ConfigError(f"{source}: {message}") from None


def load_config(config_file: str, opts: list[str]) -> CfgNode:
    """:func:`build_config` with one-line errors naming the config file or the command line."""
    cfg = build_config()
    if config_file:
        path = Path(config_file)
        if not path.exists():
            raise ConfigError(f"config file {config_file} does not exist")
        if not path.is_file():
            raise ConfigError(f"config file {config_file} is a folder, not a YAML file")
        with config_errors(config_file):
            cfg.merge_from_file(config_file)
    flags = [word for word in opts if word.startswith("--")]
    if flags:
        raise ConfigError(f"command line: {flags[0]} comes after the KEY VALUE overrides; put it before them")
    if len(opts) % 2:
        raise ConfigError(f"command line: config overrides come as KEY VALUE pairs; {opts[-1]} has no value")
    with config_errors("command line"):
        cfg.merge_from_list(opts)
    return cfg


def check_config(cfg: CfgNode, args) -> None:
    """Values that would fail late (after the model is built) or train nothing."""
    try:
        device_type = torch.device(cfg.MODEL.DEVICE).type
    except RuntimeError:
        device_type = None
    if device_type not in DEVICE_TYPES:
        raise ConfigError(f"MODEL.DEVICE {cfg.MODEL.DEVICE!r} is not a device; use cpu, cuda, cuda:N or mps")
    if cfg.MODEL.MINVIS.MATCHING not in MATCHING_MODES:
        raise ConfigError(
            f"MODEL.MINVIS.MATCHING {cfg.MODEL.MINVIS.MATCHING!r} is not one of {', '.join(MATCHING_MODES)}"
        )
    if args.eval_only:
        return
    if cfg.SOLVER.MAX_ITER < 1:
        raise ConfigError(f"SOLVER.MAX_ITER must be at least 1, got {cfg.SOLVER.MAX_ITER}")
    batch, processes = cfg.SOLVER.IMS_PER_BATCH, args.num_gpus * args.num_machines
    if batch < 1:
        raise ConfigError(f"SOLVER.IMS_PER_BATCH must be at least 1, got {batch}")
    if batch % processes:
        raise ConfigError(
            f"SOLVER.IMS_PER_BATCH {batch} is not divisible by the {processes} training processes "
            f"(--num-gpus {args.num_gpus} x --num-machines {args.num_machines})"
        )


def check_args(args) -> None:
    for flag, value in (("--num-gpus", args.num_gpus), ("--num-machines", args.num_machines)):
        if value < 1:
            raise ConfigError(f"{flag} must be at least 1, got {value}")
    if not 0 <= args.machine_rank < args.num_machines:
        raise ConfigError(f"--machine-rank must be in [0, {args.num_machines}), got {args.machine_rank}")
    if not args.dist_timeout > 0:
        raise ConfigError(f"--dist-timeout must be a positive number of seconds, got {args.dist_timeout}")
    if args.num_gpus * args.num_machines > 1:
        try:
            tcp_address(args.dist_url, args.num_machines)
        except ValueError as error:
            raise ConfigError(str(error)) from None


def run_config(args) -> CfgNode:
    """The run's frozen config; a CUDA ``MODEL.DEVICE`` falls back to the CPU without CUDA."""
    cfg = load_config(args.config_file, args.opts)
    check_config(cfg, args)
    if cfg.MODEL.DEVICE.startswith("cuda") and not torch.cuda.is_available():
        cfg.MODEL.DEVICE = "cpu"
    cfg.freeze()
    return cfg


def check_output_dir(cfg: CfgNode, args) -> None:
    """A finished run is continued (``--resume``) or replaced (``--overwrite``), never silently
    trained over; ``--eval-only`` evaluates the weights asked for and replaces earlier results
    only with ``--overwrite``; the weights a run starts from are never its output."""
    output_dir = Path(cfg.OUTPUT_DIR)
    weights = local_file(cfg.MODEL.WEIGHTS) if cfg.MODEL.WEIGHTS else None
    inputs = [weights] if weights else []
    if args.eval_only:
        check_eval_weights(cfg, args)
        folders = [output_dir / "inference"]
        if len(cfg.DATASETS.TEST) > 1:  # as Trainer.build_evaluator: one folder per dataset
            folders = [folders[0] / name for name in cfg.DATASETS.TEST]
        check_outputs([f / name for f in folders for name in EVAL_OUTPUTS], inputs, overwrite=args.overwrite)
        return
    if args.resume:
        return
    final = output_dir / FINAL_CHECKPOINT
    if final.exists() and not args.overwrite:
        raise OutputPathError(
            f"{cfg.OUTPUT_DIR} holds a finished training run ({final}); pass --resume to continue it, "
            "--overwrite to train again into it, or choose another OUTPUT_DIR"
        )
    check_outputs([final], inputs, overwrite=True)


def check_eval_weights(cfg: CfgNode, args) -> None:
    """``--eval-only`` needs weights: ``MODEL.WEIGHTS``, or the run's last checkpoint with
    ``--resume``; random weights only when ``MODEL.WEIGHTS ''`` is on the command line."""
    output_dir = Path(cfg.OUTPUT_DIR)
    resumable = args.resume and (output_dir / LAST_CHECKPOINT).is_file()
    asked_for_random = "MODEL.WEIGHTS" in args.opts[::2]  # and it is empty
    if cfg.MODEL.WEIGHTS or resumable or asked_for_random:
        return
    run = [p for p in (output_dir / FINAL_CHECKPOINT, output_dir / LAST_CHECKPOINT) if p.is_file()]
    fix = "pass"
    if run:
        fix = f"{output_dir} holds a training run ({run[0]}): pass --resume to evaluate its last weights, or"
    raise ConfigError(
        f"--eval-only needs weights and MODEL.WEIGHTS is empty; {fix} MODEL.WEIGHTS /path/to/model.pth "
        "(MODEL.WEIGHTS '' evaluates a randomly initialised model)"
    )


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
    return cfg


@contextlib.contextmanager
def checked_initial_weights(model: nn.Module, source: str, allow_random_backbone: bool) -> Iterator[None]:
    """Around loading ``source`` into ``model``: log how many tensors of each top-level module
    it gave, and refuse a backbone it gave none unless ``allow_random_backbone``."""
    names = list(model.state_dict())
    loaded: set[str] = set()
    # The state dict load_state_dict gets, after detectron2 renamed its keys and dropped the
    # tensors of another shape (a module may fill in a missing buffer later: not counted).
    handle = model.register_load_state_dict_pre_hook(lambda _, state_dict, *__: loaded.update(state_dict))
    try:
        yield
    finally:
        handle.remove()
    totals = Counter(name.split(".")[0] for name in names)
    counts = Counter(name.split(".")[0] for name in loaded & set(names))
    per_module = ", ".join(f"{module} {counts[module]}/{total}" for module, total in totals.items())
    origin = source or "nowhere (MODEL.WEIGHTS is empty)"
    logger.info(f"Initial weights: tensors loaded from {origin}: {per_module}")
    if source and totals["backbone"] and not counts["backbone"] and not allow_random_backbone:
        raise CheckpointLoadError(
            f"{source}: none of the backbone's {totals['backbone']} tensors were loaded from it (its keys "
            "name none of them; the log lists the missing keys). Check MODEL.WEIGHTS and "
            "MODEL.BACKBONE.NAME, or pass --allow-random-backbone to train from a random backbone."
        )


def weights_source(checkpointer: MinVISCheckpointer, weights: str, resume: bool) -> str:
    """What ``checkpointer.resume_or_load(weights, resume)`` loads."""
    return checkpointer.get_checkpoint_file() if resume and checkpointer.has_checkpoint() else weights


def main(args):
    # One run per OUTPUT_DIR: the main process holds its lock from before config.yaml is written.
    folder = run_config(args).OUTPUT_DIR
    with lock_output_dir(folder) if comm.is_main_process() else contextlib.nullcontext():
        return run(args)


def run(args):
    cfg = setup(args)
    if args.eval_only and is_exported(cfg.MODEL.WEIGHTS):  # tools/export/export_model.py's, in ONNX Runtime
        return Trainer.test(cfg, build_exported_model(cfg))
    if args.eval_only:
        model = Trainer.build_model(cfg)
        checkpointer = MinVISCheckpointer(model, save_dir=cfg.OUTPUT_DIR, strict=True)
        source = weights_source(checkpointer, cfg.MODEL.WEIGHTS, args.resume)
        if not source:
            warnings.warn(
                "MODEL.WEIGHTS '': evaluating a randomly initialised model", RuntimeWarning, stacklevel=1
            )
        with checked_initial_weights(model, source, allow_random_backbone=True):
            checkpointer.resume_or_load(cfg.MODEL.WEIGHTS, resume=args.resume)
        return Trainer.test(cfg, model)
    if not args.debug:  # the error is printed in one line; detectron2's trainer would log its traceback
        logging.getLogger("detectron2.engine.train_loop").addFilter(
            lambda record: not (record.exc_info and isinstance(record.exc_info[1], USER_ERRORS))
        )
    trainer = Trainer(cfg)
    source = weights_source(trainer.checkpointer, cfg.MODEL.WEIGHTS, args.resume)
    with checked_initial_weights(trainer.checkpointer.model, source, args.allow_random_backbone):
        trainer.resume_or_load(resume=args.resume)
    return trainer.train()


def parse_args(argv: list[str] | None = None):
    parser = default_argument_parser()
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="train again into an OUTPUT_DIR holding a finished run; with --eval-only, replace its results",
    )
    parser.add_argument(
        "--allow-random-backbone",
        action="store_true",
        help="train even if MODEL.WEIGHTS gives the backbone no tensor",
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks of data/checkpoint errors")
    parser.add_argument(
        "--dist-timeout",
        type=float,
        default=DEFAULT_TIMEOUT.total_seconds(),
        metavar="SECONDS",
        help="how long the processes of a multi-process run wait for a machine to join, and for a "
        "silent process in a collective, before failing",
    )
    return parser.parse_args(argv)


def error_line(error: BaseException) -> str:
    """The one-line message of ``error``; for one re-raised from a data-loader worker process
    (torch puts the worker's traceback in the message), the worker's own message."""
    message = str(error)
    if "DataLoader worker process" in message:
        message = message.rstrip().splitlines()[-1].partition(": ")[2]  # "module.Error: message"
    return message


def cli(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    print("Command Line Args:", args)
    try:
        check_args(args)
        cfg = run_config(args)
        check_output_dir(cfg, args)
        launch(
            main,
            args.num_gpus,
            num_machines=args.num_machines,
            machine_rank=args.machine_rank,
            dist_url=args.dist_url,
            args=(args,),
            use_cuda=cfg.MODEL.DEVICE.startswith("cuda"),
            timeout=timedelta(seconds=args.dist_timeout),
        )
    except (*USER_ERRORS, LaunchError) as error:
        if args.debug:
            raise
        print(f"train_net.py: error: {error_line(error)}", file=sys.stderr)
        return error.exit_code if isinstance(error, LaunchError) else BAD_INPUT
    return 0


if __name__ == "__main__":
    sys.exit(cli())
