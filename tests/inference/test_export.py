"""ONNX export and the ONNX Runtime backend: parity with PyTorch at sizes other than the traced one."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from dermseg.attributes import ATTRIBUTES
from dermseg.cli import main
from dermseg.data.imageio import read_mask
from dermseg.encoding import output_probabilities
from dermseg.errors import ConfigError, DataError
from dermseg.inference.export import ProbabilityNet, export_model, export_onnx
from dermseg.inference.onnx_runtime import META_KEYS
from dermseg.inference.segmenter import Segmenter
from dermseg.models.factory import create_model
from tests.conftest import write_tiny_checkpoint

ort = pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")

#: Neither is the traced 97 x 130: batch 2 even and non-square; batch 1 odd on both sides.
SIZES = [(2, 3, 160, 224), (1, 3, 99, 131)]
TOLERANCE = 1e-3


def _tiny(arch: str, encoder: str, encoding: str, **extra: object) -> torch.nn.Module:
    torch.manual_seed(0)
    kwargs = {
        "encoder_name": encoder,
        "encoder_weights": "none",
        "decoder_channels": [16, 16, 16, 8, 8],
        "classes": 5 if encoding == "multilabel" else 6,
    }
    if arch == "unet_aspp":
        kwargs.update(aspp_channels=16, aspp_rates=[1, 2])
    model = create_model(arch, **kwargs, **extra)
    # Random init with BatchNorm's default running statistics lets activations grow by orders of
    # magnitude (logits ~1e9 for smp + Inception), so that float rounding flips saturated softmaxes.
    # One training-mode pass sets the statistics to the data's, as a trained model's would be.
    for module in model.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.momentum = None  # cumulative average: one batch gives its own statistics
    with torch.no_grad():
        model.train()(torch.randn(2, 3, 128, 128, generator=torch.Generator().manual_seed(2)))
    return model.eval()


def _meta(encoding: str) -> dict:
    return {
        "encoding": encoding,
        "input_size": 128,
        "normalization": {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]},
        "thresholds": [0.5] * 5,
    }


@pytest.mark.parametrize(
    ("arch", "encoder", "encoding"),
    [
        ("unet_aspp", "inception_v3", "multilabel"),
        ("unet_aspp", "resnet34", "multiclass"),
        ("unet_aspp", "efficientnet_b0", "multilabel"),
        ("unet_aspp", "tf_efficientnet_lite0", "multiclass"),
        ("unet_aspp", "resnet101", "multilabel"),
        ("smp_unet", "resnet34", "multilabel"),
        ("smp_unet", "inception_v3", "multiclass"),
        ("unet_aspp+presence", "resnet18", "multilabel"),
        ("smp_unet+presence", "resnet18", "multilabel"),
    ],
)
def test_onnx_runtime_matches_torch_at_untraced_sizes(
    arch: str, encoder: str, encoding: str, tmp_path: Path
) -> None:
    # "+presence": the auxiliary presence head, whose probability gates the masks in the graph too
    arch, _, head = arch.partition("+")
    model = _tiny(arch, encoder, encoding, **({"presence_head": True} if head else {}))
    path = export_model(model, _meta(encoding), tmp_path / "m.onnx", check=False)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    rng = torch.Generator().manual_seed(1)
    for shape in SIZES:
        x = torch.randn(shape, generator=rng)
        got = session.run(["probabilities"], {"image": x.numpy()})[0]
        with torch.no_grad():
            want = output_probabilities(model(x), encoding).numpy()
        assert got.shape == (shape[0], 5, *shape[2:])
        assert np.abs(got - want).max() <= TOLERANCE, (shape, float(np.abs(got - want).max()))


def test_probability_net_is_the_model_and_its_activation() -> None:
    """No re-wiring for tracing: the exported network is the model's own forward plus the activation."""
    x = torch.randn(1, 3, 97, 101)
    for arch, extra in [("unet_aspp", {}), ("smp_unet", {}), ("unet_aspp", {"presence_head": True})]:
        model = _tiny(arch, "resnet18", "multilabel", **extra)
        with torch.no_grad():
            want = output_probabilities(model(x), "multilabel")
            assert torch.equal(ProbabilityNet(model, "multilabel")(x), want)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("ckpt") / "tiny.safetensors"
    return write_tiny_checkpoint(path, ["postprocess.thresholds=[0.4,0.5,0.6,0.5,0.3]"])


@pytest.fixture(scope="module")
def exported(checkpoint: Path) -> Path:
    """The checkpoint exported through the command line (with the built-in second-size check)."""
    out = checkpoint.parent / "tiny.onnx"
    assert main(["export", "--checkpoint", str(checkpoint), "--out", str(out)]) == 0
    return out


def test_metadata_round_trip(checkpoint: Path, exported: Path) -> None:
    from dermseg.models.checkpoint import read_meta

    meta = read_meta(checkpoint)
    props = {p.key: p.value for p in onnx.load(str(exported)).metadata_props}
    assert set(props) == set(META_KEYS)
    assert json.loads(props["attributes"]) == list(ATTRIBUTES)
    assert json.loads(props["postprocess"])["thresholds"] == [0.4, 0.5, 0.6, 0.5, 0.3]
    assert json.loads(props["dermseg_checkpoint_meta"]) == meta
    seg, ref = Segmenter.from_onnx(exported), Segmenter.from_checkpoint(checkpoint)
    assert seg.backend == "onnxruntime" and ref.backend == "torch"
    fields = ("encoding", "input_size", "mean", "std", "postprocess", "postprocess_side", "crop_background")
    for field in fields:
        assert getattr(seg, field) == getattr(ref, field), field
    assert not list(exported.parent.glob(".*.tmp*")), "atomic write left a temporary file"


def _write_images(folder: Path) -> Path:
    folder.mkdir()
    rng = np.random.default_rng(0)
    img = (rng.random((150, 210, 3)) * 255).astype(np.uint8)
    img[:, :20] = 0  # a dark dermoscope border: cropped before the network, zero afterwards
    Image.fromarray(img).save(folder / "ISIC_0000001.png")
    Image.fromarray((rng.random((181, 137, 3)) * 255).astype(np.uint8)).save(folder / "lesion_b.png")
    return folder


def test_predict_backends_agree(checkpoint: Path, exported: Path, tmp_path: Path) -> None:
    images = _write_images(tmp_path / "in")
    torch_seg, ort_seg = Segmenter.from_checkpoint(checkpoint), Segmenter.from_path(exported)
    for path in sorted(images.iterdir()):
        image = np.array(Image.open(path).convert("RGB"))
        diff = np.abs(torch_seg.probabilities(image) - ort_seg.probabilities(image)).max()
        assert diff <= TOLERANCE, (path.name, float(diff))
    outs = {}
    for name, args in {
        "torch": ["--checkpoint", str(checkpoint)],
        "onnx_file": ["--checkpoint", str(exported)],
        "ort_from_ckpt": ["--checkpoint", str(checkpoint), "--backend", "onnxruntime"],
    }.items():
        outs[name] = tmp_path / name
        assert main(["predict", str(images), "--out", str(outs[name]), *args]) == 0
    masks = sorted(p.name for p in outs["torch"].glob("*_attribute_*.png"))
    assert len(masks) == 2 * len(ATTRIBUTES)
    for name in ("onnx_file", "ort_from_ckpt"):
        assert sorted(p.name for p in outs[name].glob("*_attribute_*.png")) == masks
        same = total = 0
        for mask in masks:
            a, b = read_mask(outs["torch"] / mask), read_mask(outs[name] / mask)
            same, total = same + int((a == b).sum()), total + a.size
        assert same / total >= 0.999, (name, same / total)


def test_bad_onnx_file_is_one_line_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    images = _write_images(tmp_path / "in")
    bad = tmp_path / "broken.onnx"
    bad.write_bytes(b"this is not a protobuf")
    assert main(["predict", str(images), "--checkpoint", str(bad), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(bad) in err and "not a valid ONNX model" in err


def test_foreign_onnx_model_is_refused(tmp_path: Path) -> None:
    graph = onnx.helper.make_graph(
        [onnx.helper.make_node("Identity", ["image"], ["probabilities"])],
        "identity",
        [onnx.helper.make_tensor_value_info("image", onnx.TensorProto.FLOAT, [1, 3, 4, 4])],
        [onnx.helper.make_tensor_value_info("probabilities", onnx.TensorProto.FLOAT, [1, 3, 4, 4])],
    )
    path = tmp_path / "foreign.onnx"
    onnx.save(onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 17)]), str(path))
    with pytest.raises(DataError, match="no dermseg metadata"):
        Segmenter.from_onnx(path)
    with pytest.raises(DataError, match="not found"):
        Segmenter.from_onnx(tmp_path / "missing.onnx")


def test_bad_checkpoint_export_names_the_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x80\x04 a pickle, not safetensors")
    with pytest.raises(DataError) as err:
        export_onnx(bad, tmp_path / "m.onnx")
    assert err.value.path == bad
    assert main(["export", "--checkpoint", str(bad), "--out", str(tmp_path / "m.onnx")]) == 2
    assert str(bad) in capsys.readouterr().err and not (tmp_path / "m.onnx").exists()


def test_backend_choices(checkpoint: Path, exported: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError, match="onnxruntime backend"):
        Segmenter.from_path(exported, backend="torch")
    with pytest.raises(ConfigError, match="unknown backend"):
        Segmenter.from_path(checkpoint, backend="tensorrt")
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import fails as if not installed
    with pytest.raises(ConfigError, match=r"pip install 'dermseg\[onnx\]'"):
        Segmenter.from_path(exported)
    with pytest.raises(ConfigError, match=r"pip install 'dermseg\[onnx\]'"):
        Segmenter.from_path(checkpoint, backend="onnxruntime")


def test_onnx_sessions_use_full_optimisation_and_the_threads_asked(exported: Path) -> None:
    default = Segmenter.from_path(exported).model.session.get_session_options()
    assert default.graph_optimization_level == ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    assert default.intra_op_num_threads == 0  # ONNX Runtime's own choice
    one = Segmenter.from_path(exported, threads=1).model.session.get_session_options()
    assert one.intra_op_num_threads == 1
