from .launch import launch
from .optimizer import build_optimizer
from .trainer import Trainer

__all__ = ["Trainer", "build_optimizer", "launch"]
