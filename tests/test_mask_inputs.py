"""`plan --mask` takes the masks people have: any-value PNGs with a value map, our own COCO,
CVAT / Label Studio COCO and LabelMe exports, and folders matched by name; `--meta`/`--meta-csv`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from dermaseg.datasets.images import encode_png
from dermaseg.datasets.taxonomy import DEFAULT_TAXONOMY
from dermaseg.errors import DermasegError, InputError
from dermaseg.infer.inputs import read_photo
from dermaseg.infer.mask_inputs import pair_masks, parse_mask_values, read_photo_mask
from dermaseg.infer.meta import parse_meta_options
from dermaseg.infer.schema import Plan
from tests.conftest import run_cli
from tests.review_helpers import write_photos

TAX = DEFAULT_TAXONOMY


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, np.ndarray]]:
    folder = tmp_path_factory.mktemp("masks") / "in"
    return folder, write_photos(folder, size=128)


def test_any_value_mask_needs_and_uses_a_value_map(photos, tmp_path: Path) -> None:
    folder, masks = photos
    photo = read_photo(folder / "p1.jpg")
    binary = tmp_path / "p1_vitiligo.png"
    binary.write_bytes(encode_png(np.where(masks["p1"] == 1, 255, 0).astype(np.uint8)))
    with pytest.raises(InputError, match=r"--mask-values, e\.g\. 0:background,255:vitiligo"):
        read_photo_mask(binary, photo, TAX)
    values = parse_mask_values("0:background, 255:vitiligo", TAX)
    mask, source = read_photo_mask(binary, photo, TAX, values)
    assert np.array_equal(mask, (masks["p1"] == 1).astype(np.uint8))
    assert source.kind == "mask" and source.name == binary.name
    with pytest.raises(InputError, match="mask values 255 are not in --mask-values"):
        read_photo_mask(binary, photo, TAX, parse_mask_values("0:background", TAX))
    for bad in ("0=background", "300:scar", "1:freckle"):
        with pytest.raises(DermasegError, match="--mask-values"):
            parse_mask_values(bad, TAX)


def test_coco_from_cvat_or_label_studio_and_labelme(photos, tmp_path: Path) -> None:
    folder, _ = photos
    photo = read_photo(folder / "p6.jpg")
    square = [10, 10, 50, 10, 50, 40, 10, 40]  # 40 x 30 px
    coco = {
        "images": [
            {"id": 1, "file_name": "images/p1.jpg", "width": 128, "height": 128},
            {"id": 7, "file_name": "images/3f2a91c0-p6.jpg", "width": 128, "height": 128},
        ],
        "categories": [{"id": 1, "name": "Vitiligo"}, {"id": 2, "name": "scar"}],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 2, "segmentation": [square]},
            {"id": 2, "image_id": 7, "category_id": 1, "segmentation": [square]},
        ],
    }
    path = tmp_path / "export.json"
    path.write_text(json.dumps(coco))
    mask, _ = read_photo_mask(path, photo, TAX)
    assert int((mask == 1).sum()) == 40 * 30 and int((mask > 1).sum()) == 0
    assert pair_masks([path], [folder / "p1.jpg", folder / "p6.jpg"]) == [path, path]
    coco["categories"][0]["name"] = "freckle"
    path.write_text(json.dumps(coco))
    with pytest.raises(InputError, match="label 'freckle' has no class"):
        read_photo_mask(path, photo, TAX)
    labelme = {
        "imagePath": "p6.jpg",
        "imageWidth": 128,
        "imageHeight": 128,
        "shapes": [{"label": "scar", "shape_type": "rectangle", "points": [[20, 30], [60, 50]]}],
    }
    path = tmp_path / "p6.json"
    path.write_text(json.dumps(labelme))
    mask, _ = read_photo_mask(path, photo, TAX)
    assert int((mask == 2).sum()) == 40 * 20
    with pytest.raises(InputError, match=r"is drawn on p6\.jpg, not on p1\.jpg"):
        read_photo_mask(path, read_photo(folder / "p1.jpg"), TAX)
    labelme["imageWidth"] = 64
    path.write_text(json.dumps(labelme))
    with pytest.raises(InputError, match="annotation size 64x128 but photo is 128x128"):
        read_photo_mask(path, photo, TAX)


def test_own_coco_output_plans_the_same(photos, tmp_path: Path) -> None:
    """Plan from a mask folder, then from the plan's own NAME.coco.json: the same areas."""
    folder, masks = photos
    first = run_cli(
        "plan", str(folder), "--mask", str(folder / "masks"), "--out", str(tmp_path / "a")
    )
    assert first.returncode == 0, first.stderr
    again = run_cli(
        "plan",
        str(folder / "p1.jpg"),
        "--mask",
        str(tmp_path / "a" / "p1.coco.json"),
        "--out",
        str(tmp_path / "b"),
    )
    assert again.returncode == 0, again.stderr
    a = Plan.model_validate_json((tmp_path / "a" / "p1.plan.json").read_text())
    b = Plan.model_validate_json((tmp_path / "b" / "p1.plan.json").read_text())
    assert [c.area_px for c in a.classes] == [c.area_px for c in b.classes]
    assert [c.area_px for c in a.classes] == np.bincount(masks["p1"].ravel(), minlength=4).tolist()
    assert b.source.name == "p1.coco.json"


def test_a_folder_of_masks_is_matched_by_name_and_meta_is_recorded(photos, tmp_path: Path) -> None:
    folder, _ = photos
    masks = tmp_path / "masks"
    masks.mkdir()
    (masks / "p1.png").write_bytes((folder / "masks" / "p1.png").read_bytes())
    csv = tmp_path / "visits.csv"
    csv.write_text("photo,patient,Body site,notes\np1.jpg,P-1,left arm,first visit\n")
    result = run_cli(
        "plan",
        str(folder),
        "--mask",
        str(masks),
        "--out",
        str(tmp_path / "out"),
        "--meta",
        "clinician=Dr Who",
        "--meta-csv",
        str(csv),
    )
    assert result.returncode == 1  # p6 has no mask: it fails alone
    assert "no mask named after p6.jpg" in result.stderr and "Traceback" not in result.stderr
    plan = Plan.model_validate_json((tmp_path / "out" / "p1.plan.json").read_text())
    assert plan.meta == {
        "clinician": "Dr Who",
        "patient": "P-1",
        "body_site": "left arm",
        "notes": "first visit",
    }
    html = (tmp_path / "out" / "p1.html").read_text()
    assert "Dr Who" in html and "left arm" in html and "Intended use" in html
    with pytest.raises(DermasegError, match="did you mean patient"):
        parse_meta_options(["pateint=x"])
    with pytest.raises(DermasegError, match="--mask given 1 times for 2 photos"):
        pair_masks([masks / "p1.png"], [folder / "p1.jpg", folder / "p6.jpg"])
