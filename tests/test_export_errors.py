"""Bad exported models and exports (issue 24): one line naming the file, from the predictor, the
demo and ``train_net.py --eval-only``, and the exporter's refusals. The models here are small
hand-made ONNX graphs (constant outputs of chosen shapes), so nothing is exported."""

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from conftest import REPO, TINY_CONFIG
from onnx import TensorProto, helper, numpy_helper

from minvis.config import build_config
from minvis.data.synthetic import SyntheticSpec, render_video, video_rng, write_video_file
from minvis.modeling import CheckpointLoadError, VideoMaskFormer_frame
from minvis.modeling.exported import PREPROCESSING_KEY
from minvis.predictor import VideoPredictor


def load_script(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


demo = load_script("demo", REPO / "demo" / "demo.py")
export_model = load_script("export_model", REPO / "tools" / "export" / "export_model.py")

TINY_CLASSES, TINY_QUERIES, TINY_DIM = 4, 10, 64  # configs/tiny
ONNX_IR_VERSION, ONNX_OPSET = 10, 17  # what every supported ONNX Runtime reads


def fake_model(path: Path, classes: int = TINY_CLASSES, metadata: dict | None = None) -> Path:
    """An ONNX model with the exported model's input and outputs (constants) for the tiny config."""
    shapes = {"pred_logits": [1, TINY_QUERIES, classes + 1], "pred_masks": [1, TINY_QUERIES, 2, 2],
              "pred_embds": [1, TINY_QUERIES, TINY_DIM]}  # fmt: skip
    constants = [
        helper.make_node("Constant", [], [name], value=numpy_helper.from_array(np.zeros(shape, np.float32)))
        for name, shape in shapes.items()
    ]
    images = helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, "height", "width"])
    outputs = [helper.make_tensor_value_info(name, TensorProto.FLOAT, dims) for name, dims in shapes.items()]
    graph = helper.make_graph(constants, "fake", [images], outputs)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", ONNX_OPSET)])
    model.ir_version = ONNX_IR_VERSION
    metadata = {"size_divisibility": 32} if metadata is None else metadata
    helper.set_model_props(model, {PREPROCESSING_KEY: json.dumps(metadata)})
    onnx.save(model, path)
    return path


def predictor(weights: Path) -> VideoPredictor:
    return VideoPredictor.from_config(build_config(str(TINY_CONFIG), ["MODEL.WEIGHTS", weights]))


@pytest.fixture(scope="module")
def input_video(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("input") / "video.mp4"
    write_video_file(path, render_video(video_rng(0, "export_errors", 0), SyntheticSpec(num_frames=2)).frames)
    return path


def test_a_fitting_model_stands_in_for_the_network(tmp_path):
    model = predictor(fake_model(tmp_path / "model.onnx", metadata={"size_divisibility": 64})).model
    assert isinstance(model, VideoMaskFormer_frame) and model.size_divisibility == 64  # the model's own


@pytest.mark.parametrize(
    "kind, message",
    [
        ("missing", "exported model {path} (MODEL.WEIGHTS) does not exist"),
        ("corrupt", "{path}: not a readable ONNX model"),
        ("classes", "{path}: the exported model's pred_logits has 7 where the config's "
                    "MODEL.SEM_SEG_HEAD.NUM_CLASSES + 1 is 5"),
        ("metadata", f"{{path}}: no valid {PREPROCESSING_KEY} metadata"),
    ],
)  # fmt: skip
def test_bad_models_are_one_line_errors_naming_the_file(kind, message, tmp_path, input_video, capsys):
    path = tmp_path / "model.onnx"
    if kind == "corrupt":
        path.write_bytes(fake_model(path).read_bytes()[:100])  # a truncated file
    elif kind == "classes":
        fake_model(path, classes=6)
    elif kind == "metadata":
        fake_model(path, metadata={"pixel_mean": [0, 0, 0]})
    expected = message.format(path=path)
    with pytest.raises((FileNotFoundError, CheckpointLoadError)) as raised:
        predictor(path)
    assert str(raised.value).startswith(expected)

    demo_args = ["--input", input_video, "--output", tmp_path / "demo", "--opts", "MODEL.WEIGHTS", path]
    assert demo.main(["--config-file", str(TINY_CONFIG), *map(str, demo_args)]) == 2
    err = capsys.readouterr().err
    assert err.strip().splitlines()[-1].startswith(f"error: {expected}") and "Traceback" not in err


def test_eval_only_refuses_a_model_of_another_config_in_one_line(tmp_path):
    path = fake_model(tmp_path / "model.onnx", classes=6)
    command = [sys.executable, "train_net.py", "--eval-only", "--config-file", TINY_CONFIG,
               "MODEL.WEIGHTS", path, "OUTPUT_DIR", tmp_path / "eval"]  # fmt: skip
    done = subprocess.run(list(map(str, command)), cwd=REPO, capture_output=True, text=True)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    expected = f"train_net.py: error: {path}: the exported model's pred_logits has 7 where the config's"
    assert done.stderr.strip().splitlines()[-1].startswith(expected)


def test_the_exporter_refuses_what_it_cannot_export(tmp_path, capsys):
    exported = fake_model(tmp_path / "model.onnx")
    args = ["--config-file", str(TINY_CONFIG), "--output", str(tmp_path / "out")]
    assert export_model.main([*args, "--opts", "MODEL.WEIGHTS", str(exported)]) == 2
    assert f"MODEL.WEIGHTS {exported} is an exported model already" in capsys.readouterr().err

    assert export_model.main([*args, "--opts", "MODEL.NO_SUCH_KEY", "1"]) == 2
    assert "MODEL.NO_SUCH_KEY" in capsys.readouterr().err

    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "model.onnx").write_bytes(b"an earlier export")
    assert export_model.main(args) == 2
    assert "model.onnx already exists; pass --overwrite" in capsys.readouterr().err
    assert (tmp_path / "out" / "model.onnx").read_bytes() == b"an earlier export"
