"""detectron2 ``DefaultTrainer`` wired to MinVIS data, evaluation, optimizer and checkpoints.

Differences from detectron2 0.6's trainer: DDP on CPU (no CUDA ``device_ids``); AMP on CUDA
only; safe checkpoint loading (:class:`~minvis.modeling.MinVISCheckpointer`); checkpoints hold
the optimizer and grad-scaler state, so ``--resume`` continues AdamW's moments (detectron2
issue #4110, fixed upstream under the same ``_trainer`` key); the model gets the speed-ups;
the main process holds ``OUTPUT_DIR`` (:func:`~minvis.output_paths.lock_output_dir`) from
construction to the end of ``train()``, and during ``test()``, so a second run into it is refused.
As officially, the LR scheduler is the DeepLab project's (``WarmupPolyLR``).
"""

import logging
import os
import weakref
from contextlib import AbstractContextManager, ExitStack, nullcontext

import torch
from detectron2.config import CfgNode
from detectron2.engine import AMPTrainer, DefaultTrainer, SimpleTrainer, TrainerBase
from detectron2.projects.deeplab import build_lr_scheduler
from detectron2.utils import comm
from detectron2.utils.logger import setup_logger
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from minvis.data.build import build_ytvis_test_loader, build_ytvis_train_loader
from minvis.evaluation.evaluator import YTVISEvaluator
from minvis.modeling import MinVISCheckpointer
from minvis.modeling.speedups import apply_speedups
from minvis.output_paths import lock_output_dir

from .optimizer import build_optimizer

logger = logging.getLogger(__name__)


def wrap_distributed(model: nn.Module) -> nn.Module:
    """DDP over all processes (no-op for one); CUDA models get their local device id."""
    if comm.get_world_size() == 1:
        return model
    on_cuda = next(model.parameters()).device.type == "cuda"
    device_ids = [comm.get_local_rank()] if on_cuda else None
    return DistributedDataParallel(model, device_ids=device_ids, broadcast_buffers=False)


def _lock_on_main_process(cfg: CfgNode) -> AbstractContextManager[object]:
    return lock_output_dir(cfg.OUTPUT_DIR) if comm.is_main_process() else nullcontext()


class Trainer(DefaultTrainer):
    def __init__(self, cfg: CfgNode):
        # Same construction as DefaultTrainer.__init__, with the changes in the module docstring.
        TrainerBase.__init__(self)
        self._output_dir_lock = ExitStack()
        self._output_dir_lock.enter_context(_lock_on_main_process(cfg))
        if not logging.getLogger("detectron2").isEnabledFor(logging.INFO):
            setup_logger()
        cfg = DefaultTrainer.auto_scale_workers(cfg, comm.get_world_size())
        model = self.build_model(cfg)
        optimizer = self.build_optimizer(cfg, model)
        data_loader = self.build_train_loader(cfg)
        model = wrap_distributed(model)
        use_amp = cfg.SOLVER.AMP.ENABLED and cfg.MODEL.DEVICE.startswith("cuda")
        self._trainer = (AMPTrainer if use_amp else SimpleTrainer)(model, data_loader, optimizer)
        self.scheduler = self.build_lr_scheduler(cfg, optimizer)
        self.checkpointer = MinVISCheckpointer(model, cfg.OUTPUT_DIR, trainer=weakref.proxy(self))
        self.start_iter = 0
        self.max_iter = cfg.SOLVER.MAX_ITER
        self.cfg = cfg
        self.register_hooks(self.build_hooks())

    def train(self):
        with self._output_dir_lock:
            return super().train()

    @classmethod
    def test(cls, cfg: CfgNode, model: nn.Module, evaluators=None):
        with _lock_on_main_process(cfg):
            return super().test(cfg, model, evaluators)

    # TrainerBase's, not DefaultTrainer's: detectron2 0.6's omits "_trainer" and upstream's
    # requires it on load, while checkpoints here resume on both, in either layout.
    def state_dict(self) -> dict:
        return {**TrainerBase.state_dict(self), "_trainer": self._trainer.state_dict()}

    def load_state_dict(self, state_dict: dict) -> None:
        TrainerBase.load_state_dict(self, state_dict)
        if "_trainer" in state_dict:
            self._trainer.load_state_dict(state_dict["_trainer"])
        else:
            logger.warning("The checkpoint has no optimizer state (detectron2 0.6 format): it starts afresh.")

    @classmethod
    def build_model(cls, cfg: CfgNode) -> nn.Module:
        return apply_speedups(super().build_model(cfg))

    @classmethod
    def build_optimizer(cls, cfg: CfgNode, model: nn.Module) -> torch.optim.Optimizer:
        return build_optimizer(cfg, model)

    @classmethod
    def build_lr_scheduler(cls, cfg: CfgNode, optimizer: torch.optim.Optimizer):
        return build_lr_scheduler(cfg, optimizer)

    @classmethod
    def build_train_loader(cls, cfg: CfgNode):
        return build_ytvis_train_loader(cfg)

    @classmethod
    def build_test_loader(cls, cfg: CfgNode, dataset_name: str):
        return build_ytvis_test_loader(cfg, dataset_name)

    @classmethod
    def build_evaluator(cls, cfg: CfgNode, dataset_name: str, output_folder: str | None = None):
        if output_folder is None:
            # OUTPUT_DIR/inference/results.zip as the official release; one folder per
            # dataset when several are evaluated.
            output_folder = os.path.join(cfg.OUTPUT_DIR, "inference")
            if len(cfg.DATASETS.TEST) > 1:
                output_folder = os.path.join(output_folder, dataset_name)
        return YTVISEvaluator(dataset_name, output_dir=output_folder)
