"""The training optimizer: per-parameter groups and full-model gradient clipping."""

import pytest
import torch
from conftest import CONFIGS
from detectron2.modeling import build_model
from torch import nn

from minvis.config import build_config
from minvis.engine.optimizer import build_optimizer

TINY_CONFIG = CONFIGS / "tiny" / "minvis_tiny_synthetic.yaml"
BASE_LR, BACKBONE_MULTIPLIER = 1e-3, 0.1
WEIGHT_DECAY, WEIGHT_DECAY_NORM, WEIGHT_DECAY_EMBED = 0.05, 0.01, 0.02
SOLVER_OPTS = [
    "SOLVER.BASE_LR", BASE_LR,
    "SOLVER.BACKBONE_MULTIPLIER", BACKBONE_MULTIPLIER,
    "SOLVER.WEIGHT_DECAY", WEIGHT_DECAY,
    "SOLVER.WEIGHT_DECAY_NORM", WEIGHT_DECAY_NORM,
    "SOLVER.WEIGHT_DECAY_EMBED", WEIGHT_DECAY_EMBED,
]  # fmt: skip
BACKBONE_LR = BASE_LR * BACKBONE_MULTIPLIER


class ToyModel(nn.Module):
    """One parameter of every kind the groups tell apart, a frozen one and a shared one."""

    def __init__(self) -> None:
        super().__init__()
        self.backbone = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))
        self.backbone.absolute_pos_embed = nn.Parameter(torch.zeros(1, 4))  # Swin
        self.backbone.relative_position_bias_table = nn.Parameter(torch.zeros(9, 2))  # Swin
        self.query_embed = nn.Embedding(5, 4)
        self.norm = nn.GroupNorm(2, 4)
        self.head = nn.Linear(4, 2)
        self.same_head = self.head
        self.frozen = nn.Linear(4, 2).requires_grad_(False)


def hyperparameters(optimizer: torch.optim.Optimizer, model: nn.Module) -> dict[str, tuple[float, float]]:
    """``{parameter name: (lr, weight_decay)}``; fails if a parameter is in several groups."""
    names = {id(p): name for name, p in model.named_parameters()}
    found: dict[str, tuple[float, float]] = {}
    for group in optimizer.param_groups:
        for param in group["params"]:
            name = names[id(param)]
            assert name not in found, f"{name} is in two groups"
            found[name] = (group["lr"], group["weight_decay"])
    return found


def test_param_groups_of_a_toy_model():
    model = ToyModel()
    found = hyperparameters(build_optimizer(build_config(str(TINY_CONFIG), SOLVER_OPTS), model), model)
    assert found == {
        "backbone.0.weight": (BACKBONE_LR, WEIGHT_DECAY),
        "backbone.0.bias": (BACKBONE_LR, WEIGHT_DECAY),
        "backbone.1.weight": (BACKBONE_LR, WEIGHT_DECAY_NORM),
        "backbone.1.bias": (BACKBONE_LR, WEIGHT_DECAY_NORM),
        "backbone.absolute_pos_embed": (BACKBONE_LR, 0.0),
        "backbone.relative_position_bias_table": (BACKBONE_LR, 0.0),
        "query_embed.weight": (BASE_LR, WEIGHT_DECAY_EMBED),
        "norm.weight": (BASE_LR, WEIGHT_DECAY_NORM),
        "norm.bias": (BASE_LR, WEIGHT_DECAY_NORM),
        "head.weight": (BASE_LR, WEIGHT_DECAY),
        "head.bias": (BASE_LR, WEIGHT_DECAY),
    }


def test_param_groups_of_the_tiny_model():
    cfg = build_config(str(TINY_CONFIG), SOLVER_OPTS)
    model = build_model(cfg)
    optimizer = build_optimizer(cfg, model)
    assert isinstance(optimizer, torch.optim.AdamW)
    found = hyperparameters(optimizer, model)
    assert set(found) == {name for name, p in model.named_parameters() if p.requires_grad}
    for name, (lr, _) in found.items():
        assert lr == (BACKBONE_LR if name.startswith("backbone.") else BASE_LR), name
    expected_decay = {
        "backbone.stem.conv1.weight": WEIGHT_DECAY,
        "backbone.stem.conv1.norm.weight": WEIGHT_DECAY_NORM,  # BatchNorm
        "sem_seg_head.pixel_decoder.input_proj.0.1.weight": WEIGHT_DECAY_NORM,  # GroupNorm
        "sem_seg_head.pixel_decoder.transformer.encoder.layers.0.norm1.bias": WEIGHT_DECAY_NORM,  # LayerNorm
        "sem_seg_head.pixel_decoder.transformer.level_embed": WEIGHT_DECAY,  # a plain Parameter
        "sem_seg_head.predictor.query_feat.weight": WEIGHT_DECAY_EMBED,  # Embedding
        "sem_seg_head.predictor.class_embed.weight": WEIGHT_DECAY,
    }
    assert {name: found[name][1] for name in expected_decay} == expected_decay


# Plain SGD with lr 1: a step subtracts the (clipped) gradient.
PLAIN_SGD = [
    *["SOLVER.OPTIMIZER", "SGD", "SOLVER.MOMENTUM", 0.0, "SOLVER.BASE_LR", 1.0],
    *["SOLVER.WEIGHT_DECAY", 0.0, "SOLVER.WEIGHT_DECAY_NORM", 0.0, "SOLVER.WEIGHT_DECAY_EMBED", 0.0],
]


def two_parameters(opts: list, grad_scale: float = 1.0) -> tuple[torch.optim.Optimizer, nn.ParameterDict]:
    """Two zero parameters whose gradients have norms 3 and 4 (global norm 5) times ``grad_scale``."""
    model = nn.ParameterDict({"a": nn.Parameter(torch.zeros(2)), "b": nn.Parameter(torch.zeros(2))})
    optimizer = build_optimizer(build_config(str(TINY_CONFIG), opts), model)
    model["a"].grad = torch.tensor([3.0, 0.0]) * grad_scale
    model["b"].grad = torch.tensor([0.0, 4.0]) * grad_scale
    return optimizer, model


@pytest.mark.parametrize(
    ("clip_opts", "grad_scale", "expected_a", "expected_b"),
    [
        # Global norm 5 > 1: both gradients scaled by 1/5 (the configs' full-model clipping).
        (["SOLVER.CLIP_GRADIENTS.CLIP_VALUE", 1.0], 1.0, [0.6, 0.0], [0.0, 0.8]),
        # Global norm 0.5 < 1: untouched.
        (["SOLVER.CLIP_GRADIENTS.CLIP_VALUE", 1.0], 0.1, [0.3, 0.0], [0.0, 0.4]),
        # detectron2's per-parameter clipping, for contrast: each gradient to norm 1.
        (["SOLVER.CLIP_GRADIENTS.CLIP_TYPE", "norm", "SOLVER.CLIP_GRADIENTS.CLIP_VALUE", 1.0], 1.0,
         [1.0, 0.0], [0.0, 1.0]),
        # CLIP_VALUE 0 disables full-model clipping (as officially), it is not an error.
        (["SOLVER.CLIP_GRADIENTS.CLIP_VALUE", 0.0], 1.0, [3.0, 0.0], [0.0, 4.0]),
        (["SOLVER.CLIP_GRADIENTS.ENABLED", False], 1.0, [3.0, 0.0], [0.0, 4.0]),
    ],
)  # fmt: skip
def test_gradient_clipping_scales_the_step(clip_opts, grad_scale, expected_a, expected_b):
    optimizer, model = two_parameters(PLAIN_SGD + clip_opts, grad_scale)
    optimizer.step()
    torch.testing.assert_close(model["a"].detach(), -torch.tensor(expected_a))
    torch.testing.assert_close(model["b"].detach(), -torch.tensor(expected_b))


def test_full_model_clipping_with_adamw_clips_the_gradients_in_place():
    optimizer, model = two_parameters(["SOLVER.CLIP_GRADIENTS.CLIP_VALUE", 0.01])
    assert isinstance(optimizer, torch.optim.AdamW)
    optimizer.step()
    torch.testing.assert_close(model["a"].grad, torch.tensor([0.006, 0.0]))
    torch.testing.assert_close(model["b"].grad, torch.tensor([0.0, 0.008]))
