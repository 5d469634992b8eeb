"""`model.init_from`: a run starts from an earlier checkpoint's weights, if they fit."""

from __future__ import annotations

from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from dermaseg.datasets.taxonomy import DEFAULT_TAXONOMY, Taxonomy  # noqa: E402
from dermaseg.errors import InputError  # noqa: E402
from dermaseg.train.checkpoint import load_checkpoint  # noqa: E402
from dermaseg.train.config import load_run_config  # noqa: E402
from dermaseg.train.finetune import init_from_checkpoint  # noqa: E402
from dermaseg.train.model import build_model  # noqa: E402
from tests.conftest import make_tiny_checkpoint  # noqa: E402


def tiny(decoder: str = "[16,16,16,16,8]"):
    config = load_run_config(
        "synthetic-demo",
        ["data=unused", "model.encoder_weights=null", f"model.decoder_channels={decoder}"],
    )
    return build_model(config.model, DEFAULT_TAXONOMY.num_classes)


def test_weights_are_loaded_and_a_different_network_or_class_list_is_refused(
    tmp_path: Path,
) -> None:
    checkpoint = make_tiny_checkpoint(tmp_path)
    saved = load_checkpoint(checkpoint).model_state
    torch.manual_seed(1)
    model = tiny()
    key = next(k for k, v in saved.items() if v.dim() == 4)  # a convolution kernel
    assert not torch.equal(model.state_dict()[key], saved[key])
    init_from_checkpoint(model, checkpoint, DEFAULT_TAXONOMY)
    assert all(torch.equal(v, saved[k]) for k, v in model.state_dict().items())
    with pytest.raises(InputError, match="not the same network"):
        init_from_checkpoint(tiny("[32,16,16,16,8]"), checkpoint, DEFAULT_TAXONOMY)
    two = Taxonomy.from_names(
        [{"name": "background", "color": [0, 0, 0]}, {"name": "lesion", "color": [9, 9, 9]}]
    )
    with pytest.raises(InputError, match=r"its classes .* differ"):
        init_from_checkpoint(tiny(), checkpoint, two)
