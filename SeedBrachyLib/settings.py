"""Every user setting of SeedBrachy, once: name, type, unit, range or choices, default and help.

The one source of truth. The Slicer module's typed parameter node (``SeedBrachy.py``), the MRML
bridge's parameter list (:mod:`SeedBrachyLib.mrml.parameters`), the ``seedbrachy`` command's
options (:func:`add_arguments`) and the Logic's defaults are all derived from :data:`SETTINGS`;
no default is written anywhere else.

Names are camelCase as Slicer's parameter node stores them; the command line spells them in
kebab case (``seedActivityMci`` -> ``--seed-activity-mci``). Values are validated where they enter
(:func:`resolve`): finite numbers within their range, strings among their choices. The
library's algorithm defaults (``DEFAULT_*`` constants of the modules that use them) are written
once, in those modules, and referenced here.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from types import MappingProxyType

from .checks import available_indications
from .dose_grid import DEFAULT_SPACING_MM, DEFAULT_THRESHOLD_PCT
from .errors import InputError
from .planning.candidates import MIN_CANDIDATE_SPACING_MM
from .planning.loading import DEFAULT_SEED_SPACING_MM, PATTERNS
from .planning.optimize import OAR_METRICS
from .planning.printed_template import SETTING_RANGES, TemplateSettings
from .planning.robustness import ERROR_RANGES, ERROR_SOURCES, PlacementErrors
from .planning.template import (
    DEFAULT_BONE_THRESHOLD_HU,
    DEFAULT_HOLE_SPACING_MM,
    DEFAULT_SAFETY_MARGIN_MM,
    NEEDLE_ENTRY_DIRECTIONS,
)
from .postimplant.comparison import AXIS_SOURCES
from .postimplant.detection import REVIEW_BELOW
from .radiobiology import DEFAULT_KICKOFF_DAYS, DEFAULT_REPAIR_HALF_TIME_H, LATE_NORMAL, SPINAL_CORD, TUMOUR
from .sources import DEFAULT_U_PER_MCI, available_models, mci_to_u, model_key
from .structures import DEFAULT_BODY_THRESHOLD_HU, DEFAULT_CTV_MARGIN_MM, DEFAULT_SKIN_THICKNESS_MM

#: Planning methods: the inverse optimiser or a loading pattern (:mod:`SeedBrachyLib.planning.loading`).
PLANNING_METHODS = ("optimise", *PATTERNS)
#: Placement-error settings -> the PlacementErrors field each sets (defaults, ranges and sources live there).
PLACEMENT_ERROR_SETTINGS = {"needleDepthSdMm": "needle_depth_sd_mm", "needleEntrySdMm": "needle_entry_sd_mm",
                            "needleAngleSdDeg": "needle_angle_sd_deg", "seedAlongSdMm": "seed_along_sd_mm",
                            "seedAcrossSdMm": "seed_across_sd_mm", "seedTiltSdDeg": "seed_tilt_sd_deg",
                            "seedLossProbability": "p_lost"}
#: Template settings -> the TemplateSettings field each sets (the other dimensions keep their defaults).
TEMPLATE_SETTINGS = {"plateThicknessMm": "plate_thickness_mm", "holeClearanceMm": "clearance_mm",
                     "sleeveLengthMm": "sleeve_length_mm"}
_PLACEMENT_HELP = {"needle_depth_sd_mm": "SD of each needle's depth error along it",
                   "needle_entry_sd_mm": "SD of each needle's entry-point shift across it, per axis",
                   "needle_angle_sd_deg": "SD of each needle's deflection about its entry point, per axis",
                   "seed_along_sd_mm": "SD of each seed's error along its needle",
                   "seed_across_sd_mm": "SD of each seed's error across its needle, per axis",
                   "seed_tilt_sd_deg": "SD of each seed's axis tilt from its needle, per axis",
                   "p_lost": "probability that a seed is lost or migrates"}


def _placement_error_settings():
    """The placement-error settings: defaults, units and ranges of PlacementErrors, help with its source."""
    errors = PlacementErrors()
    for name, field in PLACEMENT_ERROR_SETTINGS.items():
        unit, minimum, maximum = ERROR_RANGES[field]
        help_text = f"{_PLACEMENT_HELP[field]} (default {ERROR_SOURCES[field]})"
        yield Setting(name, float, getattr(errors, field), unit, help_text, minimum, maximum, section="robustness")


def _template_settings():
    """The template settings: defaults and ranges of TemplateSettings."""
    template = TemplateSettings()
    helps = {"plate_thickness_mm": "thickness of the printed template's plate along the needles",
             "clearance_mm": f"hole diameter = needle outer diameter ({template.needle_od_mm:g} mm, 18G) + this",
             "sleeve_length_mm": "length of the guide sleeve beyond the plate around each hole (0: none)"}
    for name, field in TEMPLATE_SETTINGS.items():
        minimum, maximum, above_minimum = SETTING_RANGES[field]
        yield Setting(name, float, getattr(template, field), "mm", helps[field],
                      0.1 if above_minimum else minimum, maximum, section="template")


@dataclass(frozen=True)
class Setting:
    """One user setting.

    Attributes:
        name: camelCase name (parameter node, Logic keyword, ``--kebab-case`` option).
        kind: ``float``, ``int``, ``str`` or ``bool``.
        default: default value.
        unit: unit shown with the value ("mm", "Gy", "mCi", "U/mCi", "%", "HU" or "").
        help: one sentence for tooltips and ``--help``.
        minimum, maximum: allowed range (inclusive) for numbers.
        choices: allowed values for strings (a callable for lists known only at run time).
        section: the module section / command-line group it belongs to.
        canonical: for strings, a callable mapping another accepted spelling (e.g. a seed model's alias)
            to its choice, raising InputError when there is none; the choice is what is stored.
    """

    name: str
    kind: type
    default: object
    unit: str
    help: str
    minimum: float = None
    maximum: float = None
    choices: object = None
    section: str = ""
    canonical: object = None

    def allowed(self):
        """The allowed choices (tuple) or None."""
        if self.choices is None:
            return None
        return tuple(self.choices() if callable(self.choices) else self.choices)

    @property
    def option(self):
        """The command-line option, e.g. ``--seed-activity-mci``."""
        return "--" + re.sub(r"(?<=[a-z0-9])([A-Z])", r"-\1", self.name).lower()

    def validate(self, value):
        """``value`` converted to ``kind`` and checked; InputError naming the setting, value and what is allowed."""
        if self.kind is bool:
            if isinstance(value, str) and value in ("True", "False"):
                return value == "True"
            if not isinstance(value, bool):
                raise InputError(f"setting {self.name} = {value!r} invalid: must be true or false")
            return value
        if self.kind in (int, float):
            if isinstance(value, bool):
                raise InputError(f"setting {self.name} = {value!r} invalid: must be a number "
                                 f"({self.unit or 'no unit'})")
            try:
                number = self.kind(value) if self.kind is float else int(str(value)) if isinstance(value, str) \
                    else int(value)
            except (TypeError, ValueError) as error:
                raise InputError(f"setting {self.name} = {value!r} invalid: must be a number "
                                 f"({self.unit or 'no unit'})") from error
            if self.kind is int and not isinstance(value, str) and number != value:
                raise InputError(f"setting {self.name} = {value!r} invalid: must be a whole number")
            if not math.isfinite(number) or (self.minimum is not None and number < self.minimum) \
                    or (self.maximum is not None and number > self.maximum):
                raise InputError(f"setting {self.name} = {value!r} {self.unit} invalid: allowed is "
                                 f"{self.minimum:g} to {self.maximum:g} {self.unit}".rstrip())
            return number
        value = str(value)
        if self.canonical is not None:
            try:
                value = self.canonical(value)
            except InputError as error:
                raise InputError(f"setting {self.name} = {value[:80]!r} invalid: {error}") from None
        allowed = self.allowed()
        if allowed is not None and value not in allowed:
            raise InputError(f"setting {self.name} = {value!r} invalid: allowed are {', '.join(allowed)}")
        return value


_S = Setting
#: name -> Setting, in the order of the module panel.
SETTINGS = MappingProxyType({s.name: s for s in (
    # Source and prescription
    _S("sourceModel", str, "I125_OncoSeed6711", "", "TG-43U1 seed model (consensus dataset)", choices=available_models,
       section="source", canonical=model_key),
    _S("seedActivityMci", float, 0.5, "mCi", "apparent activity per seed", 0.05, 5.0, section="source"),
    _S("uPerMci", float, DEFAULT_U_PER_MCI, "U/mCi", "air-kerma strength per apparent activity (I-125 convention "
       "1.270 U/mCi)", 0.5, 2.0, section="source"),
    _S("prescriptionGy", float, 120.0, "Gy", "prescription dose (permanent implant, total)", 1.0, 300.0,
       section="source"),
    # Target
    _S("ctvMarginMm", float, DEFAULT_CTV_MARGIN_MM, "mm",
       "CTV = GTV + this margin (clipped to the body, minus no-go structures), "
       "made once as a visible segment", 0.0, 20.0, section="target"),
    # Needles and seeds
    _S("planningMethod", str, "optimise", "", "inverse optimiser or a loading pattern", choices=PLANNING_METHODS,
       section="planning"),
    _S("needleEntry", str, "right", "", "side the parallel needles enter from", choices=tuple(NEEDLE_ENTRY_DIRECTIONS),
       section="planning"),
    _S("holeSpacingMm", float, DEFAULT_HOLE_SPACING_MM, "mm",
       "template hole spacing (needles about 1 cm apart)", 3.0, 30.0,
       section="planning"),
    _S("safetyMarginMm", float, DEFAULT_SAFETY_MARGIN_MM, "mm",
       "clearance of needles from bone and no-go segments", 0.0, 20.0,
       section="planning"),
    _S("candidateSpacingMm", float, MIN_CANDIDATE_SPACING_MM, "mm",
       "spacing of candidate seed positions along each needle", 5.0, 10.0,
       section="planning"),
    _S("seedSpacingMm", float, DEFAULT_SEED_SPACING_MM, "mm",
       "seed spacing of the loading patterns", 5.0, 10.0, section="planning"),
    _S("randomSeed", int, 0, "", "random seed of the optimiser and of the robustness sampling (same seed, same "
       "result)", 0, 2 ** 31 - 1,
       section="planning"),
    _S("boneThresholdHu", float, DEFAULT_BONE_THRESHOLD_HU, "HU",
       "CT number above which tissue is bone (a needle obstacle)",
       100.0, 2000.0, section="planning"),
    # Dose
    _S("formalism", str, "line", "", "TG-43U1 2D line source or 1D point source", choices=("line", "point"),
       section="dose"),
    _S("doseSpacingMm", float, DEFAULT_SPACING_MM, "mm", "dose grid voxel size", 0.25, 5.0, section="dose"),
    _S("doseGridThresholdPct", float, DEFAULT_THRESHOLD_PCT, "%",
       "the dose grid covers every evaluated structure wherever the plan's "
       "dose exceeds this percentage of the prescription", 0.1, 50.0, section="dose"),
    # Evaluation
    _S("indication", str, "lymph-node-metastases", "", "indication whose published goals are checked (with the "
       "planning aim)", choices=available_indications, section="evaluation"),
    _S("skinThicknessMm", float, DEFAULT_SKIN_THICKNESS_MM, "mm",
       "skin = outer rind of the body (CT > bodyThresholdHu) this thick",
       1.0, 20.0, section="evaluation"),
    _S("bodyThresholdHu", float, DEFAULT_BODY_THRESHOLD_HU, "HU", "CT number above which a voxel is body", -900.0, 0.0,
       section="evaluation"),
    _S("skinD2ccLimitGy", float, 0.0, "Gy", "user limit on the skin D2cc (0 = none)", 0.0, 1000.0,
       section="evaluation"),
    _S("oarMetric", str, "D2cc", "", "metric of the organ-at-risk limit", choices=OAR_METRICS, section="evaluation"),
    _S("oarLimitGy", float, 0.0, "Gy", "user limit on the chosen organ at risk (0 = none)", 0.0, 1000.0,
       section="evaluation"),
    # Post-implant
    _S("postSeedAxis", str, "detection", "", "seed axes for the post-plan dose: detected, along the plan's needles, "
       "or unknown (1D point source)", choices=tuple(AXIS_SOURCES), section="postimplant"),
    _S("reviewBelowConfidence", float, REVIEW_BELOW, "", "detected seeds with a confidence under this are listed "
       "'to review' (kept in the point list, labelled and unselected, never dropped)", 0.0, 1.0,
       section="postimplant"),
    # Placement robustness (the random seed: randomSeed)
    _S("robustnessSamples", int, 1000, "", "simulated implants of the robustness analysis", 10, 100000,
       section="robustness"),
    *_placement_error_settings(),
    # Radiobiology
    _S("targetAlphaBetaGy", float, TUMOUR.alpha_beta_gy, "Gy", "alpha/beta of the targets", 0.5, 30.0,
       section="radiobiology"),
    _S("oarAlphaBetaGy", float, LATE_NORMAL.alpha_beta_gy, "Gy", "alpha/beta of the chosen organ at risk (other "
       f"organs: {LATE_NORMAL.alpha_beta_gy:g} Gy, a spinal cord {SPINAL_CORD.alpha_beta_gy:g} Gy)", 0.5, 30.0,
       section="radiobiology"),
    _S("repairHalfTimeH", float, DEFAULT_REPAIR_HALF_TIME_H, "h", "half-time of sublethal-damage repair",
       0.1, 10.0, section="radiobiology"),
    _S("tpotDays", float, 0.0, "days", "potential doubling time of the targets for repopulation (0 = none)",
       0.0, 100.0, section="radiobiology"),
    _S("kickoffDays", float, DEFAULT_KICKOFF_DAYS, "days", "onset of repopulation after the implant",
       0.0, 365.0, section="radiobiology"),
    _S("priorDoseGy", float, 0.0, "Gy", "prior external-beam dose, taken as received in full by every structure "
       "(the conservative sum; 0 = no prior course)", 0.0, 150.0, section="radiobiology"),
    _S("priorFractions", int, 30, "", "fractions of the prior external-beam course", 1, 100,
       section="radiobiology"),
    _S("cumulativeLimitGy", float, 0.0, "Gy", "limit on the chosen organ at risk's cumulative EQD2 of the oarMetric "
       "(0 = none)", 0.0, 1000.0, section="radiobiology"),
    # Printed template
    *_template_settings(),
)})


class Values:
    """Validated setting values with attribute access (``values.prescriptionGy``); defaults where not given."""

    __slots__ = ("_values",)

    def __init__(self, values):
        object.__setattr__(self, "_values", dict(values))

    def __getattr__(self, name):
        try:
            return self._values[name]
        except KeyError:
            raise AttributeError(name) from None

    def __setattr__(self, name, value):
        raise AttributeError("settings are read-only: use resolve(values, name=...) for changed values")

    def as_dict(self):
        """name -> value of every setting."""
        return dict(self._values)

    def __eq__(self, other):
        return isinstance(other, Values) and self._values == other._values

    def __repr__(self):
        return f"Values({self._values!r})"

    @property
    def strength_u(self):
        """Air-kerma strength S_K (U) of one seed: seedActivityMci (mCi) x uPerMci (U/mCi)."""
        return float(mci_to_u(self.seedActivityMci, self.uPerMci))

    @property
    def placement_errors(self):
        """The robustness error model (:class:`~SeedBrachyLib.planning.robustness.PlacementErrors`)."""
        return PlacementErrors(**{field: self._values[name] for name, field in PLACEMENT_ERROR_SETTINGS.items()})

    @property
    def template_settings(self):
        """The printed template's dimensions (:class:`~SeedBrachyLib.planning.printed_template.TemplateSettings`)."""
        return TemplateSettings(**{field: self._values[name] for name, field in TEMPLATE_SETTINGS.items()})

    @property
    def needle_direction(self):
        """Needle direction (RAS unit vector, entry -> tip) of needleEntry."""
        return NEEDLE_ENTRY_DIRECTIONS[self.needleEntry]


def defaults():
    """Every setting at its default (:class:`Values`)."""
    return Values({name: s.default for name, s in SETTINGS.items()})


def resolve(base=None, **changes):
    """Settings from ``base`` (:class:`Values`, a mapping, or None for the defaults) with ``changes`` applied.

    Every value is validated (InputError naming the setting, the value and what is allowed);
    unknown names are refused.
    """
    values = defaults().as_dict()
    given = base.as_dict() if isinstance(base, Values) else dict(base or {})
    given.update(changes)
    for name, value in given.items():
        if name not in SETTINGS:
            raise InputError(f"unknown setting {name!r}: known settings are {', '.join(SETTINGS)}")
        values[name] = SETTINGS[name].validate(value)
    return Values(values)


def describe(setting_name, value=None):
    """'name = value unit (help)' for a setting, e.g. for reports and logs."""
    s = SETTINGS[setting_name]
    value = s.default if value is None else value
    return f"{s.name} = {value:g} {s.unit}".rstrip() + f" ({s.help})" if s.kind in (int, float) else \
        f"{s.name} = {value} ({s.help})"


def add_arguments(parser, names=None):
    """Add ``--kebab-case`` options for ``names`` (default all) to an argparse parser; defaults from SETTINGS."""
    for name in names or SETTINGS:
        s = SETTINGS[name]
        unit = f" ({s.unit})" if s.unit else ""
        if s.kind is bool:
            parser.add_argument(s.option, dest=name, action="store_true", default=s.default,
                                help=_escaped(s.help))
            continue
        allowed = s.allowed()
        if s.canonical is not None:  # other spellings are accepted: checked by from_arguments, not argparse
            parser.add_argument(s.option, dest=name, default=s.default, metavar=name.upper(), help=_escaped(
                f"{s.help}: one of {', '.join(allowed)} (or a unique alias); default {s.default}"))
            continue
        parser.add_argument(s.option, dest=name, default=s.default, type=None if allowed else s.kind,
                            choices=allowed, help=_escaped(f"{s.help}{unit}; default {s.default}"))


def _escaped(help_text):
    """``help_text`` for argparse, which formats help with %: a unit "%" is written "%%"."""
    return help_text.replace("%", "%%")


def from_arguments(namespace, names=None):
    """Validated :class:`Values` from an argparse namespace filled by :func:`add_arguments`."""
    return resolve({name: getattr(namespace, name) for name in names or SETTINGS if hasattr(namespace, name)})
