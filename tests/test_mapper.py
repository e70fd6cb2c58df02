"""YTVISDatasetMapper and the loaders on the synthetic dataset."""

import random

import numpy as np
import pycocotools.mask as mask_util
import pytest
import torch
from detectron2.data import DatasetCatalog
from detectron2.data import transforms as T
from detectron2.data.detection_utils import read_image

from minvis.config import build_config
from minvis.data import (
    YTVISDatasetMapper,
    build_ytvis_test_loader,
    build_ytvis_train_loader,
    register_synthetic_ytvis,
)
from minvis.data.augmentation import PerClip, augment_clip
from minvis.data.mapper import segmentation_to_mask
from minvis.data.synthetic import SyntheticSpec, write_split

H, W, LENGTH = 64, 80, 12


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> str:
    """A registered synthetic split of 5 videos of 12 frames, 64x80."""
    root = tmp_path_factory.mktemp("synthetic")
    write_split(root, "train", 5, SyntheticSpec(num_frames=LENGTH, height=H, width=W), seed=3)
    (name,) = register_synthetic_ytvis(str(root), prefix="test_mapper_synthetic", splits=["train"])
    return name


def _cfg(dataset: str, *opts):
    base = [
        "DATASETS.TRAIN", f"('{dataset}',)", "INPUT.MIN_SIZE_TRAIN", f"({H},)",
        "INPUT.MAX_SIZE_TRAIN", "1000", "INPUT.RANDOM_FLIP", "none", "INPUT.FORMAT", "RGB",
        "INPUT.SAMPLING_FRAME_NUM", "3", "SOLVER.IMS_PER_BATCH", "2", "DATALOADER.NUM_WORKERS", "0",
    ]  # fmt: skip
    return build_config(None, [*base, *opts])


def _map_many(cfg, dataset: str, times: int = 1, is_train: bool = True) -> list[dict]:
    random.seed(0)
    np.random.seed(0)
    mapper = YTVISDatasetMapper(cfg, is_train=is_train)
    return [mapper(video) for video in DatasetCatalog.get(dataset) for _ in range(times)]


def _original(video: dict, frame: int) -> np.ndarray:
    return np.array(read_image(video["file_names"][frame], format="RGB"))


def test_training_clip_shapes_ids_classes_masks_and_boxes(dataset):
    videos = {v["video_id"]: v for v in DatasetCatalog.get(dataset)}
    for out in _map_many(_cfg(dataset), dataset, times=2):
        video = videos[out["video_id"]]
        assert len(out["image"]) == len(out["instances"]) == len(out["frame_indices"]) == 3
        assert out["file_names"] == [video["file_names"][f] for f in out["frame_indices"]]
        assert (out["height"], out["width"], out["length"]) == (H, W, LENGTH)
        tracks = sorted({a["id"] for f in out["frame_indices"] for a in video["annotations"][f]})
        for frame, image, inst in zip(out["frame_indices"], out["image"], out["instances"]):
            assert image.dtype == torch.uint8 and image.shape == (3, H, W)
            assert torch.equal(image.permute(1, 2, 0), torch.from_numpy(_original(video, frame)))
            assert inst.image_size == (H, W) and len(inst) == len(tracks)
            annos = {a["id"]: a for a in video["annotations"][frame]}
            assert inst.gt_ids.tolist() == [t if t in annos else -1 for t in tracks]
            for row, track in enumerate(tracks):
                mask = inst.gt_masks.tensor[row]
                if track not in annos:
                    assert not mask.any()
                    continue
                assert inst.gt_classes[row] == annos[track]["category_id"]
                assert np.array_equal(mask.numpy(), mask_util.decode(annos[track]["segmentation"]))
                ys, xs = np.nonzero(mask.numpy())
                box = [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]
                assert inst.gt_boxes.tensor[row].tolist() == box


def test_absent_track_keeps_its_class_and_empty_clip_is_well_formed(dataset):
    outs = _map_many(_cfg(dataset), dataset, times=4)
    partial = [
        (inst, row)
        for out in outs
        for inst in out["instances"]
        for row in range(len(inst))
        if inst.gt_ids[row] == -1
    ]
    assert partial, "the synthetic data should have tracks absent from some clip frames"
    for inst, row in partial:
        assert 0 <= inst.gt_classes[row] < 4
    empty = YTVISDatasetMapper(_cfg(dataset), is_train=True)(
        {**DatasetCatalog.get(dataset)[0], "annotations": [[] for _ in range(LENGTH)]}
    )
    inst = empty["instances"][0]
    assert inst.gt_masks.tensor.shape == (0, H, W) and inst.gt_boxes.tensor.shape == (0, 4)
    assert inst.gt_ids.dtype == inst.gt_classes.dtype == torch.int64


def test_flip_by_clip_flips_all_frames_and_masks_together(dataset):
    videos = {v["video_id"]: v for v in DatasetCatalog.get(dataset)}
    flipped = []
    for out in _map_many(_cfg(dataset, "INPUT.RANDOM_FLIP", "flip_by_clip"), dataset, times=4):
        video = videos[out["video_id"]]
        states = set()
        for frame, image, inst in zip(out["frame_indices"], out["image"], out["instances"]):
            original = torch.from_numpy(_original(video, frame)).permute(2, 0, 1)
            is_flipped = torch.equal(image, original.flip(-1))
            assert is_flipped or torch.equal(image, original)
            states.add(is_flipped)
            for anno in video["annotations"][frame]:
                mask = torch.from_numpy(mask_util.decode(anno["segmentation"]).astype(bool))
                row = inst.gt_ids.tolist().index(anno["id"])
                assert torch.equal(inst.gt_masks.tensor[row], mask.flip(-1) if is_flipped else mask)
        assert len(states) == 1
        flipped.append(states.pop())
    assert any(flipped) and not all(flipped)


def _clip_sizes(cfg, dataset) -> list[set]:
    return [{tuple(im.shape[1:]) for im in out["image"]} for out in _map_many(cfg, dataset, times=4)]


def test_resize_choice_by_clip_is_one_size_per_clip(dataset):
    sizes = ("INPUT.MIN_SIZE_TRAIN", "(32, 48, 64, 96)")
    by_clip = _clip_sizes(_cfg(dataset, *sizes, "INPUT.MIN_SIZE_TRAIN_SAMPLING", "choice_by_clip"), dataset)
    assert all(len(s) == 1 for s in by_clip) and len(set().union(*by_clip)) > 2
    assert set().union(*by_clip) <= {(32, 40), (48, 60), (64, 80), (96, 120)}
    per_frame = _clip_sizes(_cfg(dataset, *sizes, "INPUT.MIN_SIZE_TRAIN_SAMPLING", "choice"), dataset)
    assert any(len(s) > 1 for s in per_frame)


def test_resized_instances_follow_the_image(dataset):
    cfg = _cfg(dataset, "INPUT.MIN_SIZE_TRAIN", "(32,)", "INPUT.MIN_SIZE_TRAIN_SAMPLING", "choice_by_clip")
    for out in _map_many(cfg, dataset):
        for image, inst in zip(out["image"], out["instances"]):
            assert image.shape == (3, 32, 40) and inst.image_size == (32, 40)
            assert inst.gt_masks.tensor.shape[1:] == (32, 40)
            assert ((inst.gt_ids == -1) == ~inst.gt_masks.tensor.flatten(1).any(1)).all()


def test_frame_ratio_draws_only_the_subsampled_frames(dataset):
    cfg = _cfg(dataset, "INPUT.SAMPLING_FRAME_NUM", "1", "INPUT.SAMPLING_FRAME_RATIO", "0.25")
    drawn = {out["frame_indices"][0] for out in _map_many(cfg, dataset, times=20)}
    assert drawn == {0, 4, 8}  # round(12 * 0.25) = 3 frames: linspace(0, 12, 3)
    with pytest.raises(ValueError, match="SAMPLING_FRAME_NUM"):
        YTVISDatasetMapper(_cfg(dataset, "INPUT.SAMPLING_FRAME_RATIO", "0.25"), is_train=True)


def test_inference_maps_every_frame_resized_without_targets(dataset):
    cfg = _cfg(dataset, "INPUT.MIN_SIZE_TEST", "32", "INPUT.SAMPLING_FRAME_RATIO", "0.1")
    out = _map_many(cfg, dataset, is_train=False)[0]
    assert out["frame_indices"] == list(range(LENGTH)) and "instances" not in out
    assert [tuple(im.shape) for im in out["image"]] == [(3, 32, 40)] * LENGTH
    assert (out["height"], out["width"]) == (H, W)


def test_augment_clip_replays_per_clip_augmentations_only():
    frames = [
        np.full((20, 30, 3), i, dtype=np.uint8) + np.arange(30, dtype=np.uint8)[None, :, None]
        for i in range(3)
    ]
    np.random.seed(0)
    crops = [augment_clip([PerClip(T.RandomCrop("absolute", (10, 10)))], frames)[0] for _ in range(5)]
    for images in crops:
        assert len({int(im[0, 0, 0]) - i for i, im in enumerate(images)}) == 1  # same x offset
    per_frame = [augment_clip([T.RandomCrop("absolute", (10, 10))], frames)[0] for _ in range(5)]
    assert any(len({int(im[0, 0, 0]) - i for i, im in enumerate(images)}) > 1 for images in per_frame)


def test_polygons_and_rle_give_the_same_transformed_mask():
    mask = np.zeros((6, 8), dtype=np.uint8)
    mask[1:4, 1:3] = 1
    rle = mask_util.encode(np.asfortranarray(mask))
    polygon = [[1.0, 1.0, 3.0, 1.0, 3.0, 4.0, 1.0, 4.0]]
    transforms = T.TransformList([T.HFlipTransform(8), T.ResizeTransform(6, 8, 12, 16)])
    from_rle = segmentation_to_mask(rle, transforms, (6, 8), (12, 16))
    from_polygon = segmentation_to_mask(polygon, transforms, (6, 8), (12, 16))
    expected = np.zeros((12, 16), dtype=bool)
    expected[2:8, 10:14] = True
    assert np.array_equal(from_rle, expected) and np.array_equal(from_polygon, expected)


def test_loaders(dataset):
    cfg = _cfg(dataset, "INPUT.SAMPLING_FRAME_NUM", "1")
    batch = next(iter(build_ytvis_train_loader(cfg)))
    assert len(batch) == 2 and all(len(d["image"]) == len(d["instances"]) == 1 for d in batch)
    seen = [batch[0]["video_id"] for batch in build_ytvis_test_loader(cfg, dataset)]
    assert seen == [v["video_id"] for v in DatasetCatalog.get(dataset)]
    with pytest.raises(ValueError, match="RepeatFactorTrainingSampler"):
        build_ytvis_train_loader(_cfg(dataset, "DATALOADER.SAMPLER_TRAIN", "RepeatFactorTrainingSampler"))
