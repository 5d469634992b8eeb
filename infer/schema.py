"""The plan report (schema version 2) that `dermaseg plan` writes; other formats derive from it.

Coordinates are pixels of the photo as displayed (EXIF orientation applied), x to the right, y down,
OpenCV's convention: pixel (row i, column j) has its centre at x=j, y=i; outlines run along pixel
edges (half-integer coordinates) around the patch's pixels. Areas in px are pixel counts.
`dermaseg plan --schema` prints the JSON Schema generated from these models.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

PLAN_SCHEMA_VERSION = "2"  # 2: warnings with codes, specks, decisions, review

Point = tuple[float, float]
LabValue = tuple[float, float, float]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PlanWarning(_Strict):
    """One warning per cause: a stable code (see `infer/warning_codes.py`) and one text."""

    code: str = Field(pattern=r"^[a-z][a-z0-9\-]*$")
    text: str


class Polygon(_Strict):
    """One outline: an exterior ring and the rings of its holes, each a list of [x, y] points."""

    exterior: list[Point]
    holes: list[list[Point]] = Field(default_factory=list)


class Tone(_Strict):
    """A colour as CIELAB (D65, L* 0..100), its sRGB hex, ITA° and ITA category."""

    lab: LabValue
    hex: str = Field(pattern=r"^#[0-9a-f]{6}$")
    ita_deg: float
    ita_category: Literal["very light", "light", "intermediate", "tan", "brown", "dark"]
    pixels: int = Field(ge=0, description="How many pixels the mean was taken over.")


class PatchTone(_Strict):
    """Colour of a patch and of the ring of surrounding skin, for pigment matching."""

    patch: Tone | None
    surround: Tone | None = Field(
        description="Skin in a ring around the patch, excluding other patches, hair and the marker;"
        " null when too few such pixels exist."
    )
    delta_e76: float | None = Field(description="CIE76 colour difference patch vs surround.")
    ring_px: tuple[float, float] = Field(description="Inner and outer ring distance, px.")
    skin_share: float | None = Field(
        default=None,
        ge=0,
        le=1,
        description="Share of the ring (outside patches, hair strands and the marker) that the "
        "photo's skin model calls skin; only those pixels make the surround. null without a skin "
        "model.",
    )
    spread_delta_e76: float | None = Field(
        default=None, ge=0, description="90th percentile ΔE76 of the surround's pixels from it."
    )


class Patch(_Strict):
    """One connected region (8-connectivity) of one class."""

    id: int = Field(ge=1)
    class_id: int = Field(ge=1)
    class_name: str
    treatable: bool = Field(description="Treatable class and at least the minimum patch area.")
    polygon: Polygon
    area_px: int = Field(ge=1)
    area_mm2: float | None = Field(ge=0)
    perimeter_px: float = Field(ge=0)
    perimeter_mm: float | None = Field(ge=0)
    bbox: tuple[int, int, int, int] = Field(description="x, y, width, height in px.")
    centroid: Point
    mean_confidence: float | None = Field(ge=0, le=1, description="null for a --mask plan.")
    tone: PatchTone | None = None


class ClassTotal(_Strict):
    """Totals for one class over the whole photo (every patch, before any filter)."""

    class_id: int = Field(ge=0)
    name: str
    treatable: bool
    area_px: int = Field(ge=0)
    area_mm2: float | None = Field(ge=0)
    area_cm2: float | None = Field(ge=0)
    patch_count: int = Field(ge=0, description="Components at least the minimum patch size.")
    speck_count: int = Field(
        default=0, ge=0, description="Components under the minimum patch size: counted only."
    )
    speck_area_px: int = Field(default=0, ge=0)


class ClassDecision(_Strict):
    """What the plan did with one class found in the photo, and why."""

    class_name: str
    decision: Literal["treated", "other procedure", "below minimum", "not treatable"]
    area_px: int = Field(ge=0, description="Area of its patches (specks left out).")
    area_mm2: float | None = Field(ge=0)
    patches: int = Field(ge=0)
    specks: int = Field(ge=0)
    other_procedure: str | None = Field(
        default=None, description="The procedure that would treat it (decision 'other procedure')."
    )
    text: str


class Treatable(_Strict):
    """What will be treated: patches of treatable classes at least the minimum size, grown by the
    blending margin (the grown outlines may merge)."""

    min_patch_area_px: int = Field(ge=0)
    min_patch_area_mm2: float | None = Field(ge=0)
    min_patch_rule: str = Field(
        default="", description="How the minimum was set (smaller components are specks)."
    )
    margin_mm: float = Field(ge=0)
    margin_px: float = Field(ge=0)
    patch_count: int = Field(ge=0)
    patch_area_px: int = Field(ge=0, description="Area of the kept patches, no margin.")
    patch_area_mm2: float | None = Field(ge=0)
    area_px: int = Field(ge=0, description="Area inside the outline, margin included.")
    area_mm2: float | None = Field(ge=0)
    area_cm2: float | None = Field(ge=0)
    outline: list[Polygon]


class Marker(_Strict):
    """The calibration marker that was found."""

    dictionary: str
    id: int
    side_mm: float = Field(gt=0)
    corners_px: list[Point] = Field(min_length=4, max_length=4)
    side_lengths_px: list[float] = Field(min_length=4, max_length=4)


class Calibration(_Strict):
    method: Literal["marker", "manual", "none"]
    mm_per_pixel: float | None = Field(gt=0)
    marker: Marker | None = None
    warnings: list[PlanWarning] = Field(
        default_factory=list, description="Also in the plan's warnings."
    )


class PhotoInfo(_Strict):
    name: str
    sha256: str
    width: int = Field(ge=1)
    height: int = Field(ge=1)
    exif_orientation: int = Field(ge=1, le=8, description="EXIF orientation that was applied.")
    analysis_scale: int = Field(
        default=1,
        ge=1,
        description="The photo was analysed decoded at 1/analysis_scale of its size (a large JPEG "
        "with a model whose working size is far smaller); every px value in the plan is still in "
        "the photo's own pixels.",
    )


class SourceInfo(_Strict):
    """Where the mask came from: an ONNX planning model or a mask file drawn by a person."""

    kind: Literal["model", "mask"]
    name: str
    sha256: str
    contract_version: str | None = None
    precision: str | None = Field(default=None, description="fp32 or int8: which model ran.")
    precision_reason: str | None = Field(
        default=None, description="Why this precision ran (--precision, or auto and the CPU)."
    )
    working_size: int | None = None


class PlanOptions(_Strict):
    """The options a plan was made with, so that it can be planned again the same way (the
    review desk does so after a person corrects the mask)."""

    model: str | None = Field(default=None, description="File name of the planning model.")
    classes: list[dict] = Field(
        default_factory=list, description="The model's classes: id, name, color, treatable."
    )
    mm_per_pixel: float | None = Field(default=None, description="Scale given by hand.")
    detect_marker: bool = True
    marker_mm: float = 20.0
    marker_dict: str = "DICT_4X4_50"
    marker_id: int | None = None
    require_marker: bool = False
    procedure: str | None = Field(default=None, description="null: chosen from the classes.")
    clinic_config: dict | None = Field(
        default=None, description="The clinic config as read (its `procedures` overrides)."
    )
    clinic_config_name: str | None = None
    min_patch_mm2: float | None = None
    margin_mm: float | None = None
    min_patch_px: int = 0
    simplify_px: float = 1.0
    full_resolution: bool = False
    previous: str | None = Field(
        default=None, description="File name of the previous plan JSON given (--previous)."
    )


class Correction(_Strict):
    """A person corrected the model's mask; the plan was made again from the corrected one."""

    by: Literal["person"] = "person"
    tool: str = Field(description="What the correction was made with, e.g. dermaseg review.")
    corrected_mask: str = Field(description="File name of the corrected mask (class ids).")
    original_source: SourceInfo = Field(description="Where the corrected mask came from.")
    original_mask: str | None = Field(description="File name of the model's mask, kept.")
    created: str = Field(description="When it was saved (ISO 8601, UTC).")


class ReviewReason(_Strict):
    """Why a plan should be checked: a stable code, one text and the measured value."""

    code: str = Field(pattern=r"^[a-z][a-z0-9\-]*$")
    text: str
    value: float | None = None
    threshold: float | None = None
    sets_review: bool = Field(
        default=True, description="false: a note that does not by itself set needs_review."
    )


class Review(_Strict):
    """Whether a person should check this plan before treating, and why (`infer/review_flags.py`
    lists every reason and its threshold)."""

    needs_review: bool
    reasons: list[ReviewReason] = Field(default_factory=list)
    measures: dict[str, float | None] = Field(
        default_factory=dict, description="Every measure the reasons were decided on."
    )


class Plan(_Strict):
    """A treatment plan for one photo."""

    schema_version: Literal["2"] = PLAN_SCHEMA_VERSION
    dermaseg_version: str
    created: str | None = Field(default=None, description="When the plan was made (ISO 8601, UTC).")
    photo: PhotoInfo
    source: SourceInfo
    calibration: Calibration
    classes: list[ClassTotal]
    patches: list[Patch]
    treatable: Treatable
    skin_tone: Tone | None = Field(description="Lesion-free bare skin of the whole photo.")
    decisions: list[ClassDecision] = Field(
        default_factory=list, description="Each class found: treated or left out, and why."
    )
    warnings: list[PlanWarning] = Field(
        default_factory=list, description="One per cause (unique codes)."
    )
    review: Review | None = Field(default=None, description="Whether to check the plan, and why.")
    procedure: ProcedurePlan | None = Field(
        default=None, description="The procedure planned, in the clinic's terms."
    )
    meta: dict[str, str] = Field(
        default_factory=dict,
        description="Patient, visit, body site, clinician, notes (from --meta or the review desk).",
    )
    options: PlanOptions | None = Field(
        default=None, description="The options the plan was made with."
    )
    correction: Correction | None = Field(
        default=None, description="Set when a person corrected the mask (review desk)."
    )


Source = Literal["measured", "clinic setting", "default"]


class Number(_Strict):
    """A number with its unit and where it came from: measured from the photo, a clinic setting
    (clinic config or command line), or the procedure profile's default."""

    value: float
    unit: str
    source: Source


class Span(_Strict):
    """A low..high range with its unit and source (see Number)."""

    low: float
    high: float
    unit: str
    source: Source


class SessionEstimate(_Strict):
    """Estimated course of sessions and the rule (with the numbers used) that produced it."""

    low: int = Field(ge=1)
    high: int = Field(ge=1)
    rule: str
    source: Source = Field(description="Source of the session model's numbers.")


class PigmentTarget(_Strict):
    """The colour to match: the skin around the treated patches, or the hair near them."""

    kind: Literal["skin", "hair"]
    tone: Tone | None = Field(description="null when it could not be measured (see warnings).")
    spread_delta_e76: Number | None = Field(
        description="How much the colour varies: skin, the largest ΔE76 of one patch's surround "
        "from the target; hair, the 90th percentile ΔE76 of strand cores from it."
    )
    method: str
    source: Source = "measured"
    withheld: str | None = Field(
        default=None, description="Why no colour is offered (tone is then null)."
    )
    skin_share: float | None = Field(
        default=None,
        ge=0,
        le=1,
        description="Skin: the share of ring pixels (around the treated patches, not patches, "
        "hair or marker) that the photo's skin model calls skin; only those are kept.",
    )


class ClassStability(_Strict):
    class_name: str
    before: float = Field(ge=0)
    after: float = Field(ge=0)
    change_percent: float | None = Field(description="null when there was none before.")


class Stability(_Strict):
    """Area change per treated class since a previous plan of the same patient."""

    previous_photo: str
    unit: Literal["mm2", "px"]
    classes: list[ClassStability]
    threshold_percent: Number
    stable: bool = Field(description="No treated class grew by more than the threshold.")
    warnings: list[str] = Field(default_factory=list, description="Notes of the comparison.")


class SmpDensity(_Strict):
    """Scalp micropigmentation target from the patient's own hair around the treated region: one
    dot per strand at the strands' density, dots as wide as the strands (`infer/smp_density.py`).
    """

    dot_density: Number | None = Field(
        description="Measured hair density (strands/cm2; strands/10k px uncalibrated): the target "
        "dot density. null when the hair could not be counted (see warnings)."
    )
    dot_density_uncertainty: float | None = Field(description="1 sigma, same unit.")
    dot_size: Number | None = Field(description="Mean strand width (mm; px uncalibrated).")
    dot_size_uncertainty: float | None = Field(description="Half inter-quartile range.")
    strands_counted: float = Field(ge=0)
    pieces: int = Field(ge=0, description="Strand pieces found (crossing strands merge).")
    region_area: Number = Field(description="Healthy scalp measured.")
    method: str
    warnings: list[str] = Field(default_factory=list)


class ProcedurePlan(_Strict):
    """One micropigmentation procedure planned on this photo; every number says its source."""

    name: str
    title: str
    chosen_by: Literal["option", "treatable area"]
    classes: list[str]
    treated_patch_ids: list[int]
    min_patch_area: Number
    margin: Number
    patch_area: Number = Field(description="Area of the treated patches, no margin.")
    treatable_area: Number = Field(description="Area to treat, blending margin included.")
    pigment_target: PigmentTarget
    sessions: SessionEstimate
    interval_weeks: Span
    touch_up_months: Span
    stability: Stability | None = Field(description="null without a previous plan.")
    smp_density: SmpDensity | None = Field(
        default=None, description="SMP procedures: dot density and size from the hair nearby."
    )
    warnings: list[PlanWarning] = Field(
        default_factory=list, description="Also in the plan's warnings."
    )


Plan.model_rebuild()


def plan_json_schema() -> dict:
    """The JSON Schema of the plan report."""
    schema = Plan.model_json_schema()
    schema["$id"] = f"https://dermaseg.invalid/plan/{PLAN_SCHEMA_VERSION}/schema.json"
    return schema
