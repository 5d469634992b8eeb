"""Check: a model of every shipped recipe exports to a planning ONNX that keeps the contract.

For each recipe in `dermaseg.configs`, a randomly initialised model (encoder_weights=null, so no
download is needed) is saved as a checkpoint and exported at the recipe's working size; the
export itself runs onnx.checker, the contract invariants and the PyTorch parity check.

Usage: python benchmarks/contract_all_recipes.py
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

import torch

from dermaseg.datasets.taxonomy import DEFAULT_TAXONOMY
from dermaseg.errors import DermasegError
from dermaseg.train.checkpoint import save_checkpoint
from dermaseg.train.config import load_run_config, shipped_configs
from dermaseg.train.export import export_checkpoint
from dermaseg.train.model import build_model
from dermaseg.train.trainer import checkpoint_meta


def random_checkpoint(recipe: str, folder: Path) -> Path:
    config = load_run_config(recipe, ["data=unused", "model.encoder_weights=null"])
    torch.manual_seed(0)
    model = build_model(config.model, DEFAULT_TAXONOMY.num_classes).eval()
    meta = checkpoint_meta(config, DEFAULT_TAXONOMY, 0, None, world_size=1)
    stem = folder / recipe / "best"
    save_checkpoint(stem, model.state_dict(), meta)
    return stem.with_suffix(".safetensors")


def main() -> None:
    rows, failed = [], False
    with tempfile.TemporaryDirectory() as tmp:
        for recipe in shipped_configs():
            checkpoint = random_checkpoint(recipe, Path(tmp))
            try:
                report = export_checkpoint(checkpoint, Path(tmp) / f"{recipe}.onnx")
            except DermasegError as exc:
                rows.append({"recipe": recipe, "contract_holds": False, "error": str(exc)})
                failed = True
                continue
            rows.append(
                {
                    "recipe": recipe,
                    "contract_holds": True,
                    "working_size": report.working_size,
                    "export_s": round(report.export_seconds, 1),
                    "worst_mask_agreement": min(r["mask_agreement"] for r in report.parity),
                }
            )
    print(json.dumps(rows))
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
