"""Export: one verified planning ONNX per checkpoint; `model info`; the contract from outside."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import REPO, make_tiny_checkpoint, run_cli

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")

from dermaseg.datasets.synth import generate_photo  # noqa: E402
from dermaseg.errors import DermasegError, InputError, OutputExistsError  # noqa: E402
from dermaseg.infer import contract  # noqa: E402
from dermaseg.infer.session import PlanningModel  # noqa: E402
from dermaseg.train.export import check_invariants, export_checkpoint  # noqa: E402
from dermaseg.train.metrics import boundary_mask  # noqa: E402


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, object]:
    folder = tmp_path_factory.mktemp("export")
    checkpoint = make_tiny_checkpoint(folder)
    report = export_checkpoint(checkpoint, folder / "model.onnx", working_size=96)
    return folder / "model.onnx", report


def test_export_is_verified_and_self_describing(exported) -> None:
    path, report = exported
    assert report.working_size == 96 and report.precision == "fp32"
    sizes = {(r["height"], r["width"]) for r in report.parity}
    assert {(333, 517), (1080, 1920)} <= sizes
    assert all(r["mask_agreement"] >= 0.999 for r in report.parity)
    model = onnx.load(str(path))
    onnx.checker.check_model(model)
    meta = {p.key: p.value for p in model.metadata_props}
    assert meta[contract.KEY_CONTRACT] == "1" and meta[contract.KEY_WORKING_SIZE] == "96"
    assert [c["name"] for c in json.loads(meta[contract.KEY_CLASSES])][1] == "vitiligo"
    recipe = json.loads(meta[contract.KEY_RECIPE])
    assert recipe["encoder"] == "tu-efficientnet_lite0" and recipe["decoder_attention"] is None
    assert json.loads(meta[contract.KEY_METRICS])["mean_dice"] == 0.5


def test_contract_invariants_on_odd_sizes(exported) -> None:
    model = PlanningModel(exported[0], threads=1)
    for width, height in ((97, 131), (640, 480), (33, 700)):
        photo = generate_photo(7, (max(width, 96), max(height, 96)), with_marker=False).rgb
        photo = np.ascontiguousarray(photo[:height, :width])
        mm = np.array([0.25], np.float32)
        outputs = model.run_batch(photo[None], mm)
        assert outputs[0].shape == (1, height, width) and outputs[0].dtype == np.uint8
        check_invariants(outputs, mm, 4)
        assert outputs[3].sum() == height * width
        np.testing.assert_allclose(outputs[4][0], outputs[3][0] * 0.0625, rtol=1e-6)


def test_invariant_checker_catches_a_wrong_boundary() -> None:
    mask = np.zeros((1, 8, 8), np.uint8)
    mask[0, 2:5, 2:5] = 1
    boundary = boundary_mask(torch.from_numpy(mask[0]).long()).numpy().astype(np.uint8)[None]
    assert boundary[0, 2, 2] == 1 and boundary[0, 3, 3] == 0 and boundary[0, 1, 1] == 1
    area = np.array([[64 - 9, 9, 0, 0]])
    check_invariants([mask, mask, boundary, area, area.astype(np.float32)], np.ones(1), 4)
    with pytest.raises(DermasegError, match="boundary"):
        check_invariants([mask, mask, boundary * 0, area, area.astype(np.float32)], np.ones(1), 4)


def test_refuses_to_overwrite_and_bad_checkpoints(exported, tmp_path: Path) -> None:
    path, _ = exported
    with pytest.raises(OutputExistsError):
        export_checkpoint(Path("unused.safetensors"), path)
    fake = tmp_path / "fake.safetensors"
    fake.write_bytes(b"\x80\x04not safetensors")  # a pickle header
    with pytest.raises(InputError, match="pickle files are refused"):
        export_checkpoint(fake, tmp_path / "out.onnx")
    assert not (tmp_path / "out.onnx").exists()


def test_model_info_cli(exported, tmp_path: Path) -> None:
    result = run_cli("model", "info", str(exported[0]), "--json")
    assert result.returncode == 0, result.stderr
    info = json.loads(result.stdout)
    assert info["contract_version"] == "1"
    assert [i["name"] for i in info["inputs"]] == ["image", "mm_per_pixel"]
    assert [o["name"] for o in info["outputs"]] == list(contract.OUTPUTS)
    assert info["classes"][3]["name"] == "thinning"
    not_ours = tmp_path / "plain.onnx"
    graph = onnx.helper.make_graph(
        [onnx.helper.make_node("Identity", ["x"], ["y"])],
        "g",
        [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1])],
        [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1])],
    )
    onnx.save(onnx.helper.make_model(graph), str(not_ours))
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"not a model")
    for bad, message in (
        (not_ours, "not a dermaseg planning model"),
        (garbage, "not a loadable ONNX model"),
    ):
        result = run_cli("model", "info", str(bad))
        assert result.returncode == 2 and message in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr


def test_python_example_needs_no_dermaseg(exported, tmp_path: Path) -> None:
    photo = tmp_path / "photo.png"
    from PIL import Image

    Image.fromarray(generate_photo(3, (200, 150), with_marker=False).rgb).save(photo)
    script = REPO / "examples" / "plan_with_onnxruntime.py"
    code = (
        "import sys, runpy; sys.modules['dermaseg'] = None; "
        f"sys.argv = ['x', {str(exported[0])!r}, {str(photo)!r}, '0.2']; "
        f"runpy.run_path({str(script)!r}, run_name='__main__')"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    output = json.loads(result.stdout)
    assert output["size"] == [150, 200]
    assert sum(c["area_px"] for c in output["classes"]) == 150 * 200
    assert output["classes"][1]["area_mm2"] == pytest.approx(output["classes"][1]["area_px"] * 0.04)


NODE, NPM = shutil.which("node"), shutil.which("npm")


@pytest.mark.skipif(NODE is None or NPM is None, reason="node and npm are not installed")
def test_javascript_example(exported, tmp_path_factory: pytest.TempPathFactory) -> None:
    folder = tmp_path_factory.mktemp("node")
    install = subprocess.run(
        [NPM, "install", "--ignore-scripts", "--no-audit", "--no-fund", "onnxruntime-node"],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=600,
    )
    if install.returncode != 0:
        pytest.skip(f"npm could not install onnxruntime-node: {install.stderr[-300:]}")
    shutil.copy(REPO / "examples" / "plan_with_onnxruntime_node.mjs", folder / "plan.mjs")
    photo = generate_photo(4, (160, 120), with_marker=False).rgb
    (folder / "photo.rgb").write_bytes(photo.tobytes())
    result = subprocess.run(
        [NODE, "plan.mjs", str(exported[0]), "photo.rgb", "160", "120", "0.5"],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    output = json.loads(result.stdout)
    reference = PlanningModel(exported[0]).run(photo, 0.5)
    assert output["size"] == [120, 160]
    assert output["area_px"] == reference.area_px.tolist()
    assert output["boundary_pixels"] == int(reference.boundary.sum())


def test_eval_of_an_onnx_model_uses_full_size_labels(exported, tmp_path: Path) -> None:
    from dermaseg.datasets.synth import generate_dataset

    data = tmp_path / "data"
    manifest = generate_dataset(data, n=3, size=(120, 96), seed=11)
    result = run_cli("eval", str(exported[0]), "--data", str(data), "--split", "all", "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["photos"] == 3 and report["working_size"] == 96
    for name in ("background", "vitiligo", "scar", "thinning"):
        truth = sum(p["class_area_px"][name] for p in manifest["photos"])
        assert report["per_class"][name]["support_px"] == truth


class _ConstantNet(torch.nn.Module):
    """The same logits at every pixel: a near-tie when the top two are close."""

    def __init__(self, *logits: float) -> None:
        super().__init__()
        self.logits = torch.tensor(logits).view(1, len(logits), 1, 1)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        n, _, h, w = pixels.shape
        return self.logits.expand(n, self.logits.shape[1], h, w).clone()


def test_parity_is_judged_on_decisive_pixels_only() -> None:
    from dermaseg.train.export import decisive_pixels
    from dermaseg.train.planning_graph import PlanningGraph

    batch = np.zeros((2, 40, 70, 3), dtype=np.uint8)
    tied = PlanningGraph(_ConstantNet(0.0, 0.01), 64, 2).eval()
    clear = PlanningGraph(_ConstantNet(0.0, 3.0), 64, 2).eval()
    image = torch.from_numpy(batch)
    tied_pixels = decisive_pixels(tied.working_probabilities(image)[1], batch.shape[1:3])
    assert tied_pixels.shape == (2, 40, 70)
    assert not tied_pixels.any()
    assert decisive_pixels(clear.working_probabilities(image)[1], batch.shape[1:3]).all()


def test_parity_fails_on_decisive_disagreement_and_near_ties_cannot_hide_it(exported) -> None:
    """The exported tiny model checked against graphs that say one class everywhere: one of
    two different classes disagrees with it on at least half the pixels, decisively or not."""
    from dermaseg.train.export import MIN_MASK_AGREEMENT, sample_photos, verify_against_torch
    from dermaseg.train.planning_graph import PlanningGraph

    path, _ = exported
    photos = sample_photos(((96, 128),))

    def fails(*logits: float) -> bool:
        graph = PlanningGraph(_ConstantNet(*logits), 96, 4).eval()
        try:
            verify_against_torch(path, graph, 4, photos, MIN_MASK_AGREEMENT)
        except DermasegError:
            return True
        return False

    assert fails(5.0, 0.0, -9.0, -9.0) or fails(0.0, 5.0, -9.0, -9.0)  # decisive
    assert fails(0.01, 0.0, -9.0, -9.0) or fails(0.0, 0.01, -9.0, -9.0)  # near-ties only


class _PixelNet(torch.nn.Module):
    """Logits from each pixel alone (channels 0 and 1): mirroring commutes with it."""

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return pixels[:, :2] / 255.0


class _RowNet(torch.nn.Module):
    """Class 1 in the top half of the padded input, 0 below: mirroring up-down changes it."""

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        n, _, h, w = pixels.shape
        top = (torch.arange(h) < h // 2).float().view(1, 1, h, 1).expand(n, 1, h, w)
        return torch.cat([1 - top, top], dim=1)


@pytest.mark.parametrize("tta", ["flip", "mirror"])
def test_tta_passes_are_flipped_back_onto_the_photo(tta: str) -> None:
    """Every pass, mirrored back, lines up with the photo's own pass (a per-pixel network on a
    photo whose sides are not multiples of 32, so padding sits on the mirrored side too)."""
    from dermaseg.train.planning_graph import TTA_FLIPS, pass_logits

    pixels = torch.from_numpy(np.random.default_rng(1).integers(0, 255, (2, 3, 45, 70))).float()
    passes = pass_logits(_PixelNet(), pixels, tta)
    assert len(passes) == 1 + len(TTA_FLIPS[tta])
    for logits in passes:
        assert torch.equal(logits, passes[0])


def test_mirror_tta_counts_disagreement_of_the_up_down_passes() -> None:
    """A network that is not symmetric up-down: left-right flips agree, up-down ones do not,
    and `tta_disagreement` is the share of pixels where a mirrored pass differs from the
    photo's, averaged over the mirrored passes (two of three differ everywhere)."""
    from dermaseg.train.planning_graph import PlanningGraph

    image = torch.zeros((1, 64, 64, 3), dtype=torch.uint8)
    scale = torch.tensor([0.1])
    flip = PlanningGraph(_RowNet(), 64, 2, tta="flip").eval()(image, scale)
    mirror = PlanningGraph(_RowNet(), 64, 2, tta="mirror").eval()(image, scale)
    assert float(flip[5][0]) == 0.0
    assert float(mirror[5][0]) == pytest.approx(2 / 3)  # every row changes class up-down
    with pytest.raises(ValueError, match="tta must be"):
        PlanningGraph(_RowNet(), 64, 2, tta="rot90")


def test_the_recipe_chooses_the_exports_tta_and_the_option_overrides_it(
    tmp_path: Path, exported
) -> None:
    from dermaseg.train.export import export_checkpoint

    checkpoint = make_tiny_checkpoint(tmp_path, ("export.tta=mirror", "augment.vflip=0.5"))
    by_recipe = export_checkpoint(checkpoint, tmp_path / "a.onnx", working_size=64)
    assert by_recipe.tta == "mirror"
    meta = {p.key: p.value for p in onnx.load(str(tmp_path / "a.onnx")).metadata_props}
    assert json.loads(meta[contract.KEY_TTA]) == {"mode": "mirror"}
    model = PlanningModel(tmp_path / "a.onnx", threads=1)
    photo = np.ascontiguousarray(np.random.default_rng(2).integers(0, 255, (50, 83, 3), np.uint8))
    assert 0.0 <= model.run(photo).tta_disagreement <= 1.0
    by_option = export_checkpoint(checkpoint, tmp_path / "b.onnx", working_size=64, tta="none")
    assert by_option.tta == "none"
    assert exported[1].tta == "none"  # a recipe without export.tta
