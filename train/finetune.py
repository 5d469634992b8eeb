"""Fine-tuning: start a run from the weights of an earlier checkpoint (`model.init_from`).

The checkpoint must be of the same network (architecture, encoder, decoder) and classes, for
example the model whose plans a clinic corrected in the review desk; only the weights are taken
(the optimiser, schedule and epoch start afresh).
"""

from __future__ import annotations

from pathlib import Path

from torch import nn

from dermaseg.datasets.taxonomy import Taxonomy
from dermaseg.errors import InputError
from dermaseg.train.checkpoint import load_checkpoint


def init_from_checkpoint(model: nn.Module, path: Path, taxonomy: Taxonomy) -> None:
    """Load the weights of checkpoint `path` into `model`; InputError when they do not fit."""
    loaded = load_checkpoint(path)
    names = [c.get("name") for c in loaded.meta.get("taxonomy", [])]
    if names and names != taxonomy.names:
        raise InputError(
            path, f"model.init_from: its classes {names} differ from the dataset's {taxonomy.names}"
        )
    try:
        model.load_state_dict(loaded.model_state, strict=True)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0]
        raise InputError(
            path, f"model.init_from: not the same network as model: in the config ({first})"
        ) from None
