"""Inference precision: one setting, ``MODEL.MASK_FORMER.TEST.PRECISION``, resolved by
:func:`minvis.modeling.precision.resolve_precision` (``auto``: float16 on CUDA when the
official ``TEST.AMP.ENABLED``, float32 otherwise); the model runs its network under that
autocast and keeps its declared float32 islands in float32; tracking, the video-level
result and the evaluation always work on float32 outputs.

No GPU here: CPU autocast (bfloat16, and float16 where it only checks dtypes) stands in for
CUDA's; the float16 deviation on CUDA is measured by the GPU benchmark, not by these tests.
"""

import itertools
import sys
from pathlib import Path

import pytest
import torch
from conftest import CONFIGS
from detectron2.modeling import build_model

from minvis import tracking
from minvis.config import build_config
from minvis.data import register_synthetic_ytvis
from minvis.data.synthetic import SyntheticSpec, write_split
from minvis.engine import Trainer
from minvis.modeling.precision import float32_islands, resolve_precision

TINY_CONFIG = str(CONFIGS / "tiny" / "minvis_tiny_synthetic.yaml")
_prefixes = itertools.count()


# ------------------------------------------------------------------ the setting
def test_defaults_are_the_official_behaviour() -> None:
    cfg = build_config(TINY_CONFIG)
    assert cfg.MODEL.MASK_FORMER.TEST.PRECISION == "auto"
    assert cfg.TEST.AMP.ENABLED is True


@pytest.mark.parametrize(
    "precision, amp, device, expected",
    [
        ("auto", True, "cuda", "fp16"),
        ("auto", True, "cuda:1", "fp16"),
        ("auto", True, "cpu", "fp32"),
        ("auto", False, "cuda", "fp32"),
        ("auto", False, "cpu", "fp32"),
        ("fp32", True, "cuda", "fp32"),
        ("fp16", False, "cuda", "fp16"),
        ("fp16", True, "cpu", "fp16"),
        ("bf16", False, "cpu", "bf16"),
        ("bf16", True, "cuda", "bf16"),
    ],
)
def test_resolve_precision(precision: str, amp: bool, device: str, expected: str) -> None:
    cfg = build_config(TINY_CONFIG, ["MODEL.MASK_FORMER.TEST.PRECISION", precision, "TEST.AMP.ENABLED", amp])
    cfg.MODEL.DEVICE = device  # resolved from the config alone, no device needed
    assert resolve_precision(cfg) == expected


def test_unknown_precision_is_refused() -> None:
    cfg = build_config(TINY_CONFIG, ["MODEL.MASK_FORMER.TEST.PRECISION", "fp8"])
    with pytest.raises(ValueError, match="PRECISION"):
        resolve_precision(cfg)


@pytest.mark.parametrize(
    "precision, amp, dtype",
    [
        ("auto", True, None),
        ("fp32", True, None),
        ("bf16", False, torch.bfloat16),
        ("fp16", False, torch.float16),
    ],
)
def test_the_built_model_takes_the_resolved_precision(precision: str, amp: bool, dtype) -> None:
    cfg = build_config(
        TINY_CONFIG,
        ["MODEL.DEVICE", "cpu", "MODEL.MASK_FORMER.TEST.PRECISION", precision, "TEST.AMP.ENABLED", amp],
    )
    assert build_model(cfg).inference_dtype is dtype


# ------------------------------------------------------------------ the islands
@pytest.fixture(scope="module")
def parity_models(parity_cfg, parity_fixture) -> dict[str, torch.nn.Module]:
    models = {}
    for precision in ("fp32", "bf16", "fp16"):
        cfg = parity_cfg.clone()
        cfg.MODEL.MASK_FORMER.TEST.PRECISION = precision
        model = build_model(cfg).eval()
        model.load_state_dict(parity_fixture["state_dict"], strict=True)
        models[precision] = model
    return models


def _frames(parity_fixture) -> list[torch.Tensor]:
    return [f.float() for f in parity_fixture["input"]["frames"]]


def _attention_layers(model) -> list[torch.nn.Module]:
    from mask2former.modeling.pixel_decoder.ms_deform_attn import MSDeformAttn

    return [m for m in model.sem_seg_head.pixel_decoder.modules() if isinstance(m, MSDeformAttn)]


def test_declared_islands(parity_models) -> None:
    model = parity_models["bf16"]
    head = model.sem_seg_head
    attention = _attention_layers(model)
    assert attention
    projections = [p for m in attention for p in (m.sampling_offsets, m.attention_weights)]
    assert model.float32_islands(torch.bfloat16) == projections
    # The official float16 evaluation and training (the official AMP): the pixel decoder.
    assert model.float32_islands(torch.float16) == [head.pixel_decoder]
    model.train()
    try:  # bfloat16 training (CPU AMP) keeps the same islands as bfloat16 inference
        assert model.float32_islands(torch.bfloat16) == projections
        assert model.float32_islands(torch.float16) == [head.pixel_decoder]
    finally:
        model.eval()



def _training_video(height: int = 128, width: int = 160) -> dict:
    """A dataset-mapper video of 2 frames with 2 moving squares (classes 0 and 1)."""
    from detectron2.structures import BitMasks, Instances

    generator, frames, per_frame = torch.Generator().manual_seed(0), [], []
    for t in range(2):
        frames.append(torch.randint(0, 256, (3, height, width), generator=generator).float())
        masks = torch.zeros(2, height, width, dtype=torch.bool)
        for i in range(2):
            masks[i, 20 + 40 * i + 4 * t : 60 + 40 * i + 4 * t, 30 + 50 * i : 70 + 50 * i] = True
        instances = Instances((height, width), gt_classes=torch.tensor([0, 1]), gt_ids=torch.tensor([0, 1]))
        instances.gt_masks = BitMasks(masks)
        per_frame.append(instances)
    return {"image": frames, "instances": per_frame, "height": height, "width": width}


def test_bf16_training_step_runs_the_encoder_low_and_stays_close_to_fp32() -> None:
    models = {}
    for amp in (False, True):
        overrides = ["MODEL.DEVICE", "cpu", "MODEL.WEIGHTS", "", "SOLVER.AMP.ENABLED", amp]
        cfg = build_config(TINY_CONFIG, overrides)
        torch.manual_seed(0)
        models[amp] = build_model(cfg).train()
    losses, grads, encoder_dtypes = {}, {}, set()
    for amp, model in models.items():
        linear = model.sem_seg_head.pixel_decoder.transformer.encoder.layers[0].linear1
        handle = linear.register_forward_hook(lambda m, args, out: encoder_dtypes.add(out.dtype))
        torch.manual_seed(1)  # the point sampling of the losses
        per_loss = model([_training_video()])
        handle.remove()
        assert {loss.dtype for loss in per_loss.values()} == {torch.float32}
        losses[amp] = sum(per_loss.values())
        losses[amp].backward()
        grads[amp] = linear.weight.grad
    assert encoder_dtypes == {torch.float32, torch.bfloat16}  # fp32, then bf16: no float32 island
    assert losses[True].item() == pytest.approx(losses[False].item(), rel=0.03)
    # Random weights: near-equal queries may be matched differently, so the gradients are
    # compared in size only.
    assert grads[True].isfinite().all()
    assert grads[True].norm().item() == pytest.approx(grads[False].norm().item(), rel=0.1)


class _DtypeSpy:
    """Records the output dtypes of named modules and the float inputs of the deformable sampling."""

    def __init__(self, model, monkeypatch: pytest.MonkeyPatch) -> None:
        self.outputs: dict[str, set] = {}
        self.sampling: set[tuple[torch.dtype, ...]] = set()
        head = model.sem_seg_head
        attention = _attention_layers(model)
        named = {
            "backbone": model.backbone,
            "pixel_decoder": head.pixel_decoder,
            "predictor": head.predictor,
            "value_proj": attention[0].value_proj,
            "sampling_offsets": attention[0].sampling_offsets,
            "attention_weights": attention[0].attention_weights,
        }
        self.handles = [module.register_forward_hook(self._hook(name)) for name, module in named.items()]
        layer_module = sys.modules[type(attention[0]).__module__]
        sample = layer_module.ms_deform_attn_from_offsets

        def spy(value, shapes, starts, reference, offsets, logits, *args, **kwargs):
            self.sampling.add((value.dtype, reference.dtype, offsets.dtype, logits.dtype))
            return sample(value, shapes, starts, reference, offsets, logits, *args, **kwargs)

        monkeypatch.setattr(layer_module, "ms_deform_attn_from_offsets", spy)

    def _hook(self, name: str):
        def record(module, args, output) -> None:
            tensors = output.values() if isinstance(output, dict) else output
            tensors = tensors if isinstance(output, tuple | list | dict) else [output]
            flat = [t for x in tensors for t in (x if isinstance(x, list) else [x])]
            dtypes = {t.dtype for t in flat if isinstance(t, torch.Tensor)}
            self.outputs.setdefault(name, set()).update(dtypes)

        return record

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()


def _outputs(model, frames) -> list[tracking.FrameOutputs]:
    with torch.no_grad():
        return list(model.frame_outputs(frames))


def test_bf16_runs_the_network_low_and_the_islands_float32(
    parity_models, parity_fixture, monkeypatch
) -> None:
    model = parity_models["bf16"]
    spy = _DtypeSpy(model, monkeypatch)
    try:
        outputs = _outputs(model, _frames(parity_fixture)[:2])
    finally:
        spy.remove()
    assert spy.outputs["backbone"] == {torch.bfloat16}  # the network did run in bfloat16
    assert spy.outputs["value_proj"] == {torch.bfloat16}
    assert torch.bfloat16 in spy.outputs["predictor"]  # the decoder too
    # The islands: the sampling's inputs; the outputs tracking compares are float32 again.
    assert spy.outputs["sampling_offsets"] == spy.outputs["attention_weights"] == {torch.float32}
    assert spy.sampling == {(torch.float32,) * 4}
    assert all(o.logits.dtype == o.masks.dtype == o.embds.dtype == torch.float32 for o in outputs)


def test_fp16_keeps_the_pixel_decoder_float32(parity_models, parity_fixture, monkeypatch) -> None:
    model = parity_models["fp16"]
    spy = _DtypeSpy(model, monkeypatch)
    try:
        outputs = _outputs(model, _frames(parity_fixture)[:1])
    finally:
        spy.remove()
    assert spy.outputs["backbone"] == {torch.float16}
    assert spy.outputs["pixel_decoder"] == {torch.float32}
    assert spy.sampling == {(torch.float32,) * 4}
    assert torch.float16 in spy.outputs["predictor"]  # the decoder follows the autocast
    assert all(o.logits.dtype == o.masks.dtype == o.embds.dtype == torch.float32 for o in outputs)


def test_fp32_model_runs_float32(parity_models, parity_fixture, monkeypatch) -> None:
    model = parity_models["fp32"]
    spy = _DtypeSpy(model, monkeypatch)
    try:
        _outputs(model, _frames(parity_fixture)[:1])
    finally:
        spy.remove()
    assert set().union(*spy.outputs.values()) == {torch.float32}


def test_islands_are_hooks_only_while_the_network_runs(parity_models, parity_fixture) -> None:
    model = parity_models["bf16"]
    _outputs(model, _frames(parity_fixture)[:1])
    for module in model.modules():
        assert not module._forward_pre_hooks and not module._forward_hooks


def test_float32_islands_context_manager() -> None:
    """Inputs cast to float32, autocast off inside, hooks removed on exit (also on errors)."""
    linear, other = torch.nn.Linear(4, 3), torch.nn.Linear(3, 2)
    x = torch.randn(5, 4)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        with float32_islands([linear]):
            inside = linear(x.bfloat16())
            assert other(inside).dtype == torch.bfloat16  # outside the island: autocast again
        after = linear(x)
        with pytest.raises(RuntimeError), float32_islands([linear]):
            raise RuntimeError("boom")
        assert linear(x).dtype == torch.bfloat16
    assert inside.dtype == torch.float32 and after.dtype == torch.bfloat16
    torch.testing.assert_close(inside, linear(x.bfloat16().float()), rtol=1e-6, atol=1e-6)
    assert not linear._forward_pre_hooks and not linear._forward_hooks


# ------------------------------------------------------------------ bf16 vs fp32
def test_bf16_outputs_close_to_fp32_on_the_parity_fixture(parity_models, parity_fixture) -> None:
    """Measured here: relative errors 3.5-4.5%, cosine >= 0.97, 98.9% of mask pixels on the
    same side of 0, probabilities within 0.024, the same tracks on every frame."""
    frames = _frames(parity_fixture)
    full, low = (_outputs(parity_models[p], frames) for p in ("fp32", "bf16"))
    for field in ("logits", "masks", "embds"):
        a, b = (torch.stack([getattr(o, field) for o in outs]) for outs in (low, full))
        assert ((a - b).norm() / b.norm()).item() < 0.08, field
    cosine = torch.nn.functional.cosine_similarity(
        torch.stack([o.embds for o in low]), torch.stack([o.embds for o in full]), dim=-1
    )
    assert cosine.min().item() > 0.95
    same_side = torch.stack([(o.masks > 0) == (r.masks > 0) for o, r in zip(low, full, strict=True)])
    assert same_side.float().mean().item() > 0.97

    trackers = tracking.Tracker(), tracking.Tracker()
    for low_frame, full_frame in zip(low, full, strict=True):
        assert torch.equal(trackers[0].step(low_frame), trackers[1].step(full_frame))
    probabilities = [t.probabilities() for t in trackers]
    assert (probabilities[0] - probabilities[1]).abs().max().item() < 0.05


def test_tracking_runs_on_float32_outputs(parity_models, parity_fixture) -> None:
    """Under bfloat16 the tracker compares float32 embeddings, and the model's result is
    the paper's inference over its float32 frame outputs."""
    model = parity_models["bf16"]
    frames = _frames(parity_fixture)
    seen: list[torch.dtype] = []
    cost = model.tracking_cost

    def spy(tracks, current):
        seen.extend((tracks.embds.dtype, current.embds.dtype, tracks.logits.dtype, current.masks.dtype))
        return cost(tracks, current)

    model.tracking_cost = spy
    try:
        size = (parity_fixture["input"]["height"], parity_fixture["input"]["width"])
        with torch.no_grad():
            result = model([{"image": frames, "height": size[0], "width": size[1]}])
    finally:
        model.tracking_cost = cost
    assert seen and set(seen) == {torch.float32}

    expected = tracking.track_video(_outputs(model, frames), size, top_k=model.top_k)
    assert result["pred_scores"] == expected["pred_scores"]
    assert result["pred_labels"] == expected["pred_labels"]
    for got, want in zip(result["pred_masks"], expected["pred_masks"], strict=True):
        assert torch.equal(got, want)


# ------------------------------------------------------------------ evaluation
def test_eval_with_amp_key_on_equals_float32_on_cpu(tmp_path: Path) -> None:
    """TEST.AMP.ENABLED (official default, on) means float16 on CUDA only: on the CPU the
    evaluation gives the same results file as with it off."""
    root = tmp_path / "datasets"
    write_split(root / "synthetic_ytvis", "val", 2, SyntheticSpec(num_frames=4, height=64, width=80), seed=0)
    prefix = f"precision_test_{next(_prefixes)}"
    register_synthetic_ytvis(str(root / "synthetic_ytvis"), prefix=prefix, splits=("val",))
    outputs, weights = {}, None
    for enabled in (True, False):
        cfg = build_config(
            TINY_CONFIG,
            ["MODEL.DEVICE", "cpu", "DATASETS.TEST", f"('{prefix}_val',)", "DATALOADER.NUM_WORKERS", 0,
             "OUTPUT_DIR", tmp_path / str(enabled), "TEST.AMP.ENABLED", enabled],
        )  # fmt: skip
        torch.manual_seed(0)
        model = Trainer.build_model(cfg).eval()
        assert model.inference_dtype is None
        weights = weights or model.state_dict()
        model.load_state_dict(weights)
        Trainer.test(cfg, model)
        outputs[enabled] = (tmp_path / str(enabled) / "inference" / "results.json").read_bytes()
    assert outputs[True] == outputs[False]
    assert b'"video_id"' in outputs[True]  # entries were written
