"""A `plan` output folder as the review desk sees it: the photos planned in it, their files, and
nothing else. Every path is made here from a known photo stem and a known output suffix, inside
the folder; names from a request are looked up, never joined onto a path. Symlinks are refused.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dermaseg.datasets.images import decode_mask
from dermaseg.datasets.taxonomy import DEFAULT_TAXONOMY, LabelClass, Taxonomy
from dermaseg.errors import DermasegError, InputError
from dermaseg.fileio import parse_json
from dermaseg.infer.outputs import CORRECTED_MASK, SUFFIXES, corrected_paths, output_paths
from dermaseg.infer.schema import Plan

PLAN_SUFFIX = SUFFIXES["plan"]
MAX_FILE_BYTES = 256 * 1024 * 1024  # no output of a plan comes near this
MAX_DEPTH = 8  # subfolders of a folder planned with --recursive


class NotInFolder(DermasegError):
    """A name that is not one of the folder's photos or files (the server answers 404)."""


@dataclass(frozen=True)
class Entry:
    """One planned photo: its stem (the outputs' common name) and what the list shows."""

    stem: str
    photo: str
    needs_review: bool
    reasons: tuple[str, ...]
    corrected: bool
    procedure: str | None
    sessions: str | None
    treatable: str


def read_regular(path: Path, limit: int = MAX_FILE_BYTES) -> bytes:
    """The bytes of a regular file, refusing symlinks (O_NOFOLLOW) and files over `limit`."""
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        raise NotInFolder(f"{path.name}: not found") from None
    except OSError as exc:
        raise NotInFolder(f"{path.name}: cannot be read ({exc.strerror})") from None
    with os.fdopen(fd, "rb") as handle:
        info = os.fstat(handle.fileno())
        if not os.path.stat.S_ISREG(info.st_mode) or info.st_size > limit:
            raise NotInFolder(f"{path.name}: not a regular file of a plan")
        return handle.read()


def review_state(raw: dict) -> tuple[bool, tuple[str, ...]]:
    """Whether the plan asks for a person's review, and why (the plan's `review` section, when
    the planner wrote one; otherwise: warnings mean review)."""
    review = raw.get("review")
    if isinstance(review, dict) and "needs_review" in review:
        reasons = review.get("reasons")
        texts = tuple(text_of(r) for r in (reasons if isinstance(reasons, list) else []))
        return bool(review["needs_review"]), texts
    warnings = tuple(text_of(w) for w in raw.get("warnings") or [])
    return bool(warnings), warnings


def text_of(item: object) -> str:
    """A warning or review reason as text: plain strings, or objects with a text and a code."""
    if isinstance(item, dict):
        return str(item.get("text") or item.get("message") or item.get("code") or "")
    return str(item)


class PlanFolder:
    """The plan folder OUT_DIR: lists its plans, reads and writes only their files."""

    def __init__(self, root: Path) -> None:
        if not root.is_dir():
            raise InputError(root, "not a folder (give the --out folder of `dermaseg plan`)")
        self.root = root.resolve()
        self._entries: dict[str, tuple[tuple[int, int], Entry]] = {}  # by plan mtime and size

    # ---- what is in it -----------------------------------------------------------------------

    def stems(self) -> list[str]:
        """Stems of the plan JSONs in the folder and its subfolders (a folder planned with
        --recursive): NAME or SUB/NAME. Regular files only; symlinks and hidden names are left
        out, and symlinked folders are not entered."""
        stems = []
        for top, dirs, files in os.walk(self.root, followlinks=False):
            depth = len(Path(top).relative_to(self.root).parts)
            dirs[:] = [] if depth >= MAX_DEPTH else sorted(d for d in dirs if not d.startswith("."))
            for name in files:
                path = Path(top) / name
                if (
                    name.endswith(PLAN_SUFFIX)
                    and not name.startswith(".")
                    and path.is_file()
                    and not path.is_symlink()
                ):
                    stems.append(path.relative_to(self.root).as_posix()[: -len(PLAN_SUFFIX)])
        return sorted(stems)

    def check_stem(self, stem: str) -> str:
        """`stem` when it names a plan in this folder; NotInFolder otherwise."""
        if not stem or stem not in self.stems():
            raise NotInFolder(f"no plan named {stem!r} in the folder")
        return stem

    def paths(self, stem: str) -> dict[str, Path]:
        return output_paths(self.root, self.check_stem(stem))

    def corrected_mask_path(self, stem: str) -> Path:
        return corrected_paths(self.root, self.check_stem(stem))["mask"]

    def read(self, stem: str, kind: str) -> bytes:
        """One output file of a plan by kind (plan, mask, overlay, photo, report, ... or
        corrected)."""
        if kind == "corrected":
            return read_regular(self.corrected_mask_path(stem))
        paths = self.paths(stem)
        if kind not in paths:
            raise NotInFolder(f"no output kind {kind!r}")
        return read_regular(paths[kind])

    def raw_plan(self, stem: str) -> dict:
        data = parse_json(self.read(stem, "plan"), self.paths(stem)["plan"])  # deep: an error
        if not isinstance(data, dict):
            raise InputError(self.paths(stem)["plan"], "not a plan JSON object")
        return data

    def plan(self, stem: str) -> Plan:
        """The plan, validated (fields another version added are dropped)."""
        data = self.raw_plan(stem)
        known = {k: v for k, v in data.items() if k in Plan.model_fields}
        try:
            return Plan.model_validate(known)
        except ValueError as exc:
            first = str(exc).splitlines()[0]
            raise InputError(self.paths(stem)["plan"], f"not a valid plan ({first})") from None

    def is_corrected(self, stem: str) -> bool:
        path = self.corrected_mask_path(stem)
        return path.is_file() and not path.is_symlink()

    def entries(self) -> list[Entry]:
        """Every plan, those needing review first, then by name."""
        entries = []
        for stem in self.stems():
            try:
                info = os.stat(self.root / f"{stem}{PLAN_SUFFIX}", follow_symlinks=False)
                key = (info.st_mtime_ns, info.st_size)
                if stem in self._entries and self._entries[stem][0] == key:
                    entries.append(self._entries[stem][1])
                    continue
                entry = self._entry(stem, self.raw_plan(stem))
            except (DermasegError, OSError, AttributeError, TypeError, KeyError):
                continue  # damaged, or not a plan dermaseg wrote: not listed
            self._entries[stem] = (key, entry)
            entries.append(entry)
        return sorted(entries, key=lambda e: (not e.needs_review, e.stem))

    def _entry(self, stem: str, raw: dict) -> Entry:
        """What the list shows of one plan (its raw JSON)."""
        needs, reasons = review_state(raw)
        procedure = raw.get("procedure") or {}
        sessions = procedure.get("sessions") or {}
        treatable = raw.get("treatable") or {}
        area_mm2 = treatable.get("area_mm2")
        return Entry(
            stem=stem,
            photo=str((raw.get("photo") or {}).get("name", stem)),
            needs_review=needs and raw.get("correction") is None,
            reasons=reasons,
            corrected=self.is_corrected(stem),
            procedure=procedure.get("title") or procedure.get("name"),
            sessions=(
                f"{sessions['low']}-{sessions['high']}"
                if "low" in sessions and "high" in sessions
                else None
            ),
            treatable=(
                f"{area_mm2 / 100:.2f} cm²"
                if isinstance(area_mm2, int | float)
                else f"{treatable.get('area_px', 0):,} px"
            ),
        )

    # ---- masks -------------------------------------------------------------------------------

    def taxonomy(self, plan: Plan) -> Taxonomy:
        """The classes the plan was made with (recorded in its options), else the defaults."""
        if plan.options is not None and plan.options.classes:
            return Taxonomy(classes=[LabelClass(**c) for c in plan.options.classes])
        return DEFAULT_TAXONOMY

    def current_mask(self, stem: str, plan: Plan, *, original: bool = False) -> np.ndarray:
        """The class-id mask at the size of the photo as analysed (NAME.photo.jpg): the
        person's correction if there is one (and not `original`), else the model's."""
        kind = "corrected" if self.is_corrected(stem) and not original else "mask"
        name = f"{stem}{CORRECTED_MASK}" if kind == "corrected" else f"{stem}{SUFFIXES['mask']}"
        full = decode_mask(self.read(stem, kind), name).pixels
        scale = plan.photo.analysis_scale
        return np.ascontiguousarray(full[::scale, ::scale])
