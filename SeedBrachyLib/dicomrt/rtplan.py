"""RT Plan for permanent seed implants (Brachy Treatment Technique PERMANENT, Type LDR): seeds out and in.

Export (:func:`write_rtplan`)
-----------------------------
* Source Sequence: one item per distinct seed strength, Source Isotope Name I-125 (the model's radionuclide),
  Source Isotope Half Life (days), Source Type CYLINDER, Source Model ID, Source Manufacturer, Active Source
  Length (mm), Source Strength Units AIR_KERMA_RATE, Reference Air Kerma Rate = S_K (uGy h^-1 at 1 m, the same
  number as U) at the Source Strength Reference Date/Time = the implant date and time.
* One Application Setup holding one Channel per seed. SlicerRT's importer (vtkSlicerDicomRtReader::LoadRTPlan)
  reads only the first Application Setup and makes one markups curve per Channel from its control points'
  3D positions (LPS -> RAS), looking channels up by Channel Number 1..N; so one setup with channels numbered
  1..N shows every seed. One channel per seed (rather than one per needle) because each seed then carries its
  own strength (Referenced Source Number), exact position and orientation, seeds placed by hand or detected
  post-implant (no needle) are written the same way, and SlicerRT shows one point per seed instead of a curve
  through doubled points.
* Each Channel: Source Movement Type FIXED, two Brachy Control Points at the seed centre (LPS mm) with the
  seed axis as Control Point Orientation, Cumulative Time Weight 0 then 1; Channel Total Time = the mean life
  T1/2 / ln 2 (s), so Total Reference Air Kerma = sum of S_K x mean life (uGy at 1 m), the air kerma to
  complete decay, as the permanent-implant dose D = D0 x mean life.
* Prescription: the Fraction Group (one fraction, one Application Setup) gives it as Brachy Application Setup
  Dose (Gy) and references the RT Prescription's Dose Reference (TARGET, Target Prescription Dose, Gy).
* Approval Status UNAPPROVED (research use).

Import (:func:`read_rtplan`)
----------------------------
Seeds of RT Plans from other systems, in the three encodings found in practice: one Application Setup per
seed; one Channel per needle with a pair of control points per seed; one Channel per seed. A seed is a run
of consecutive control points at one position over which the cumulative time weight grows (all positions
when a channel has no weights). Strengths are decayed from each source's reference date to the implant date
and time given (default: the reference date, no decay); :attr:`PlanSeeds.decay_lines` shows the decay.
"""

from __future__ import annotations

import datetime
import json
import math
import re
from dataclasses import dataclass, field

import numpy as np
from pydicom.dataset import Dataset
from pydicom.uid import RTPlanStorage, RTStructureSetStorage, generate_uid

from .. import RESEARCH_NOTICE
from ..errors import InputError
from ..seeds import Seed
from ..sources import get_model, model_key
from .dataset import (
    date_time,
    dicom_date_time,
    ds_number,
    integer,
    new_dataset,
    number,
    numbers,
    read_object,
    save,
    sequence,
    sequence_of,
    text,
    uid,
)
from .geometry import lps_to_ras, ras_to_lps

#: Control points closer than this (mm) are at one position.
SAME_POSITION_MM = 1e-3
MAX_SEEDS = 20_000
SECONDS_PER_DAY = 86400.0
#: Largest decay (either way) between a source's strength reference date and the implant, in half-lives.
MAX_HALF_LIVES = 20
#: Source Model ID is SH: at most 16 characters.
MODEL_ID_LENGTH = 16


@dataclass(frozen=True)
class SourceInfo:
    """One Source Sequence item: strength in U (= uGy h^-1 at 1 m) at ``reference_datetime``; texts as written."""

    number: int
    isotope: str
    half_life_days: float
    reference_air_kerma_rate_u: float
    reference_datetime: datetime.datetime = None
    model_id: str = ""
    manufacturer: str = ""
    source_type: str = ""
    description: str = ""


@dataclass
class PlanSeeds:
    """Seeds read from an RT Plan, strengths at the implant date (U), positions mm RAS.

    Attributes:
        seeds: list of :class:`~SeedBrachyLib.seeds.Seed`.
        sources: the :class:`SourceInfo` items, by source number.
        model_key: the SeedBrachy seed model the first source names (Source Model ID, else the model name in
            Source Description), or None.
        implant_datetime: the date the strengths are decayed to (None: no reference date in the file).
        prescription_gy: the prescription (Gy) if the plan gives one, else None.
        encoding: "one application setup per seed", "one channel per needle" or "one channel per seed".
        frame_of_reference_uid, sop_instance_uid: the plan's.
        notes: what the reader assumed or skipped.
    """

    seeds: list
    sources: dict
    model_key: str = None
    implant_datetime: datetime.datetime = None
    prescription_gy: float = None
    encoding: str = ""
    frame_of_reference_uid: str = None
    sop_instance_uid: str = None
    notes: list = field(default_factory=list)

    def decay_factor(self, source):
        """S_K(implant) / S_K(reference) of ``source``: exp(-ln 2 x days / T1/2)."""
        if self.implant_datetime is None or source.reference_datetime is None:
            return 1.0
        days = (self.implant_datetime - source.reference_datetime).total_seconds() / SECONDS_PER_DAY
        if abs(days) > MAX_HALF_LIVES * source.half_life_days:
            raise InputError(f"source {source.number}: strength reference date {source.reference_datetime:%Y-%m-%d} "
                             f"is {days:.0f} d from the implant date {self.implant_datetime:%Y-%m-%d}, more than "
                             f"{MAX_HALF_LIVES} half-lives ({source.half_life_days:g} d): check both dates")
        return math.exp(-math.log(2.0) * days / source.half_life_days)

    def decay_lines(self):
        """One line per source: S_K at its reference date, the decay, S_K at implant."""
        lines = []
        for s in self.sources.values():
            if s.reference_datetime is None or self.implant_datetime is None:
                lines.append(f"source {s.number} ({s.model_id or s.isotope}): S_K {s.reference_air_kerma_rate_u:.4f} "
                             "U, no reference date: not decayed")
                continue
            days = (self.implant_datetime - s.reference_datetime).total_seconds() / SECONDS_PER_DAY
            f = self.decay_factor(s)
            lines.append(f"source {s.number} ({s.model_id or s.isotope}): S_K {s.reference_air_kerma_rate_u:.4f} U on "
                         f"{s.reference_datetime:%Y-%m-%d %H:%M}, decayed {days:.2f} d (T1/2 {s.half_life_days:g} d, "
                         f"factor {f:.5f}) to {s.reference_air_kerma_rate_u * f:.4f} U at implant "
                         f"{self.implant_datetime:%Y-%m-%d %H:%M}")
        return lines


def model_id(model):
    """Source Model ID of a SeedBrachy seed model: a spelling that names it alone, at most 16 characters.

    Source Model ID (300A,0229) is SH, VM 1 (PS3.6): 16 characters at most. The first of these that fits and
    that :func:`~SeedBrachyLib.sources.model_key` resolves to this model alone: the key without its
    radionuclide prefix (``OncoSeed6711``), that without separators (``selectSeed130002``), a model number of
    the name (``130.002``). A model with none (a user model with a long key and no short alias) gets its key
    cut to 16 characters; the reader then finds it by its name in Source Description.
    """
    key = model.key
    for prefix in ("I125_", "Pd103_", "Cs131_"):
        if key.startswith(prefix):
            key = key[len(prefix):]
    head = model.name.split("(", 1)[0]
    spellings = [key, re.sub(r"[\s_\-.]+", "", key), *(w for w in head.split() if any(c.isdigit() for c in w))]
    for spelling in spellings:
        if len(spelling) <= MODEL_ID_LENGTH and _model_key(spelling) == model.key:
            return spelling
    return key[:MODEL_ID_LENGTH]


def _manufacturer(model):
    try:
        with open(model.path, encoding="utf-8") as f:
            return str(json.load(f).get("manufacturer", ""))[:64]
    except (OSError, ValueError):
        return ""


def write_rtplan(path, seeds, model, study, prescription_gy, implant_datetime=None, structure_set_uid=None,
                 target_roi_number=None, label="SeedBrachy", overwrite=False):
    """Write ``seeds`` (mm RAS, S_K in U at ``implant_datetime``) of TG-43 ``model`` as an RT Plan; return its dataset.

    ``study`` (:class:`~.dataset.Study`): patient, study, frame of reference (the CT's). ``prescription_gy``:
    the prescribed total dose (Gy). ``implant_datetime`` (default now) is the strength reference date.
    ``structure_set_uid``: SOP Instance UID of the RT Structure Set the plan was made on (plan geometry PATIENT)
    and ``target_roi_number`` its target ROI (the Dose Reference then points to it).
    """
    check_plan(seeds, prescription_gy)
    model = get_model(model)
    moment = implant_datetime or datetime.datetime.now().replace(microsecond=0)
    ds = new_dataset(RTPlanStorage, "RTPLAN", study, "SeedBrachy plan")
    ds.OperatorsName = ""
    ds.RTPlanLabel = label[:16]
    ds.RTPlanName = label[:64]
    ds.RTPlanDescription = (f"Permanent I-125 seed implant, {len(seeds)} seeds, TG-43U1 ({model.name}); "
                            f"{RESEARCH_NOTICE}")[:1024]
    ds.RTPlanDate, ds.RTPlanTime = ds.SeriesDate, ds.SeriesTime
    if structure_set_uid:
        ds.RTPlanGeometry = "PATIENT"
        ref = Dataset()
        ref.ReferencedSOPClassUID = RTStructureSetStorage
        ref.ReferencedSOPInstanceUID = structure_set_uid
        ds.ReferencedStructureSetSequence = sequence_of([ref])
    else:
        ds.RTPlanGeometry = "TREATMENT_DEVICE"
    ds.DoseReferenceSequence = sequence_of([_dose_reference(prescription_gy, target_roi_number)])
    strengths = sorted({float(s.strength_u) for s in seeds})
    mean_life_s = model.mean_life_h * 3600.0
    ds.FractionGroupSequence = sequence_of([_fraction_group(prescription_gy)])
    ds.BrachyTreatmentTechnique = "PERMANENT"
    ds.BrachyTreatmentType = "LDR"
    machine = Dataset()
    machine.TreatmentMachineName = "MANUAL"
    machine.Manufacturer = ""
    ds.TreatmentMachineSequence = sequence_of([machine])
    ds.SourceSequence = sequence_of([_source(n + 1, model, s, moment) for n, s in enumerate(strengths)])
    setup = Dataset()
    setup.ApplicationSetupType = "OTHER"
    setup.ApplicationSetupNumber = 1
    setup.ApplicationSetupName = "Permanent seed implant"
    setup.TotalReferenceAirKerma = ds_number(sum(s.strength_u for s in seeds) * mean_life_s / 3600.0)
    setup.ChannelSequence = sequence_of([_channel(n + 1, seed, strengths.index(float(seed.strength_u)) + 1,
                                                  mean_life_s) for n, seed in enumerate(seeds)])
    ds.ApplicationSetupSequence = sequence_of([setup])
    ds.ApprovalStatus = "UNAPPROVED"
    save(ds, path, overwrite)
    return ds


def check_plan(seeds, prescription_gy):
    """InputError unless there are 1..MAX_SEEDS seeds and the prescription (Gy) is a finite number > 0."""
    if not seeds:
        raise InputError("no seeds given: an RT Plan needs at least one seed")
    if len(seeds) > MAX_SEEDS:
        raise InputError(f"{len(seeds)} seeds exceed {MAX_SEEDS}")
    if isinstance(prescription_gy, bool) or not (isinstance(prescription_gy, (int, float)) and
                                                 math.isfinite(prescription_gy) and prescription_gy > 0):
        raise InputError(f"prescription {prescription_gy!r} Gy invalid: must be a finite number > 0 Gy")


def _dose_reference(prescription_gy, target_roi_number):
    ref = Dataset()
    ref.DoseReferenceNumber = 1
    ref.DoseReferenceUID = generate_uid()
    if target_roi_number is None:
        ref.DoseReferenceStructureType = "SITE"
    else:
        ref.DoseReferenceStructureType = "VOLUME"
        ref.ReferencedROINumber = int(target_roi_number)
    ref.DoseReferenceDescription = "Prescription: total dose to complete decay"
    ref.DoseReferenceType = "TARGET"
    ref.TargetPrescriptionDose = ds_number(prescription_gy)
    return ref


def _fraction_group(prescription_gy):
    group = Dataset()
    group.FractionGroupNumber = 1
    group.NumberOfFractionsPlanned = 1
    group.NumberOfBeams = 0
    group.NumberOfBrachyApplicationSetups = 1
    dose_ref = Dataset()
    dose_ref.ReferencedDoseReferenceNumber = 1
    group.ReferencedDoseReferenceSequence = sequence_of([dose_ref])
    setup = Dataset()
    setup.ReferencedBrachyApplicationSetupNumber = 1
    setup.BrachyApplicationSetupDose = ds_number(prescription_gy)
    group.ReferencedBrachyApplicationSetupSequence = sequence_of([setup])
    return group


def _source(number_, model, strength_u, moment):
    src = Dataset()
    src.SourceNumber = number_
    src.SourceModelID = model_id(model)
    src.SourceDescription = model.name[:64]
    src.SourceType = "CYLINDER"
    src.SourceManufacturer = _manufacturer(model)
    src.ActiveSourceLength = ds_number(model.active_length_mm)
    src.SourceIsotopeName = model.radionuclide[:64]
    src.SourceIsotopeHalfLife = ds_number(model.half_life_days)
    src.SourceStrengthUnits = "AIR_KERMA_RATE"
    src.ReferenceAirKermaRate = ds_number(strength_u)
    src.SourceStrength = ds_number(strength_u)  # in Source Strength Units: S_K, uGy m^2 h^-1 (= U)
    src.SourceStrengthReferenceDate, src.SourceStrengthReferenceTime = dicom_date_time(moment)
    return src


def _channel(number_, seed, source_number, mean_life_s):
    ch = Dataset()
    ch.ChannelNumber = number_
    ch.ChannelLength = ""
    ch.ChannelTotalTime = ds_number(mean_life_s)
    ch.SourceMovementType = "FIXED"
    ch.ReferencedSourceNumber = source_number
    ch.NumberOfControlPoints = 2
    ch.FinalCumulativeTimeWeight = "1"
    ch.TransferTubeNumber = ""
    points = []
    for index in (0, 1):
        cp = Dataset()
        cp.ControlPointIndex = index
        cp.CumulativeTimeWeight = str(index)
        cp.ControlPointRelativePosition = "0"
        cp.ControlPoint3DPosition = [ds_number(x) for x in ras_to_lps(seed.position)]
        cp.ControlPointOrientation = [float(x) for x in ras_to_lps(seed.axis)]
        points.append(cp)
    ch.BrachyControlPointSequence = sequence_of(points)
    return ch


# ----------------------------------------------------------------------------- reading
def read_rtplan(path, implant_datetime=None, default_axis=(0.0, 0.0, 1.0)):
    """The seeds of the RT Plan ``path`` as :class:`PlanSeeds` (mm RAS, S_K in U decayed to ``implant_datetime``).

    ``implant_datetime`` (datetime): default the first source's strength reference date (no decay).
    ``default_axis`` (RAS): for seeds whose orientation the file gives neither directly nor by a needle.
    """
    ds, where = read_object(path, "RT Plan", "RTPLAN", RTPlanStorage)
    kind = text(ds, "BrachyTreatmentType", where, required=False)
    technique = text(ds, "BrachyTreatmentTechnique", where, required=False)
    if "ApplicationSetupSequence" not in ds:
        raise InputError(f"{where}: no Application Setup Sequence: not a brachytherapy plan")
    if kind not in ("LDR", "MANUAL"):
        raise InputError(f"{where}: Brachy Treatment Type {kind!r} is not a seed implant: LDR or MANUAL expected")
    notes = [] if technique == "PERMANENT" else [f"Brachy Treatment Technique {technique!r}, read as a seed implant"]
    sources = {}
    for item in sequence(ds, "SourceSequence", where):
        src = _read_source(item, where)
        if src.number in sources:
            raise InputError(f"{where}: Source Number {src.number} appears twice")
        sources[src.number] = src
    first = next(iter(sources.values()))
    moment = implant_datetime or first.reference_datetime
    if implant_datetime is not None and any(s.reference_datetime is None for s in sources.values()):
        raise InputError(f"{where}: a source has no Source Strength Reference Date: its strength cannot be decayed "
                         "to the implant date")
    plan = PlanSeeds([], sources, _source_model_key(first), moment, _prescription(ds, where), "",
                     uid(ds, "FrameOfReferenceUID", where, required=False), uid(ds, "SOPInstanceUID", where), notes)
    setups = sequence(ds, "ApplicationSetupSequence", where)
    per_channel = []
    for s, setup in enumerate(setups):
        for c, channel in enumerate(sequence(setup, "ChannelSequence", f"{where}: application setup {s + 1}")):
            here = f"{where}: application setup {s + 1}, channel {c + 1}"
            source = sources.get(integer(channel, "ReferencedSourceNumber", here))
            if source is None:
                raise InputError(f"{here}: Referenced Source Number is not in the Source Sequence "
                                 f"({sorted(sources)})")
            found = _channel_seeds(channel, here, source, plan.decay_factor(source), np.asarray(default_axis, float),
                                   f"S{s + 1}C{c + 1}", plan.notes)
            per_channel.append(len(found))
            plan.seeds.extend(found)
            if len(plan.seeds) > MAX_SEEDS:
                raise InputError(f"{where}: more than {MAX_SEEDS} seeds")
    if not plan.seeds:
        raise InputError(f"{where}: the plan has no seed positions")
    if len(setups) > 1 and len(setups) == len(plan.seeds):
        plan.encoding = "one application setup per seed"
    elif max(per_channel) > 1:
        plan.encoding = "one channel per needle"
    else:
        plan.encoding = "one channel per seed"
    return plan


def _read_source(item, where):
    number_ = integer(item, "SourceNumber", f"{where}: Source Sequence")
    here = f"{where}: source {number_}"
    units = text(item, "SourceStrengthUnits", here, required=False)
    if units not in ("", "AIR_KERMA_RATE"):
        raise InputError(f"{here}: Source Strength Units {units!r}: only AIR_KERMA_RATE (S_K) can be used")
    reference = date_time(item, "SourceStrengthReferenceDate", "SourceStrengthReferenceTime", here, required=False)
    return SourceInfo(number_, text(item, "SourceIsotopeName", here),
                      number(item, "SourceIsotopeHalfLife", here, minimum=1e-6, maximum=1e7),
                      number(item, "ReferenceAirKermaRate", here, minimum=0, maximum=1e9),
                      reference, text(item, "SourceModelID", here, required=False),
                      text(item, "SourceManufacturer", here, required=False),
                      text(item, "SourceType", here, required=False),
                      text(item, "SourceDescription", here, required=False))


def _model_key(name):
    """The key of the SeedBrachy model ``name`` (a key or a unique alias) names, or None."""
    try:
        return model_key(name) if name else None
    except InputError:
        return None


def _source_model_key(source):
    """The SeedBrachy model of a Source Sequence item: by its Source Model ID, else by the name in its description."""
    return _model_key(source.model_id) or _model_key(source.description.split("(", 1)[0].strip())


def _prescription(ds, where):
    for group in sequence(ds, "FractionGroupSequence", where, required=False):
        for setup in sequence(group, "ReferencedBrachyApplicationSetupSequence", where, required=False):
            dose = number(setup, "BrachyApplicationSetupDose", where, required=False, minimum=0, maximum=1e6)
            if dose:
                return dose
    for ref in sequence(ds, "DoseReferenceSequence", where, required=False):
        dose = number(ref, "TargetPrescriptionDose", where, required=False, minimum=0, maximum=1e6)
        if dose:
            return dose
    return None


def _channel_seeds(channel, where, source, decay, default_axis, label, notes):
    items = sequence(channel, "BrachyControlPointSequence", where)
    count = integer(channel, "NumberOfControlPoints", where, minimum=1, maximum=MAX_SEEDS * 4)
    if count != len(items):
        raise InputError(f"{where}: Number of Control Points {count} but {len(items)} control points")
    points = {}
    for item in items:
        index = integer(item, "ControlPointIndex", where, minimum=0, maximum=count - 1)
        if index in points:
            raise InputError(f"{where}: Control Point Index {index} appears twice")
        here = f"{where}, control point {index}"
        position = numbers(item, "ControlPoint3DPosition", here, 3, required=False, minimum=-1e5, maximum=1e5)
        if position is None:
            raise InputError(f"{here}: no Control Point 3D Position: seeds without 3D positions cannot be imported")
        weight = number(item, "CumulativeTimeWeight", here, required=False)
        axis = numbers(item, "ControlPointOrientation", here, 3, required=False, minimum=-1.001, maximum=1.001)
        if axis is not None and not 0.99 < np.linalg.norm(axis) < 1.01:
            raise InputError(f"{here}: Control Point Orientation {axis} is not a unit vector")
        points[index] = (lps_to_ras(position), weight, None if axis is None else lps_to_ras(axis))
    ordered = [points[i] for i in range(count)]
    weights = [w for _, w, _ in ordered]
    timed = all(w is not None for w in weights) and weights[-1] > weights[0]
    if timed and np.any(np.diff(weights) < 0):
        raise InputError(f"{where}: Cumulative Time Weights decrease ({weights}): they must not")
    runs = []  # (position, first index, last index)
    for n, (p, _, _) in enumerate(ordered):
        if runs and np.linalg.norm(p - runs[-1][0]) <= SAME_POSITION_MM:
            runs[-1][2] = n
        else:
            runs.append([p, n, n])
    if timed:
        runs = [r for r in runs if weights[r[2]] > weights[r[1]]]
    elif len(runs) > 0:
        notes.append(f"{where}: no time weights; every control point position is taken as a seed")
    positions = [r[0] for r in runs]
    needle = positions[-1] - positions[0] if len(positions) > 1 else None
    seeds = []
    for n, (p, first, _) in enumerate(runs):
        axis = ordered[first][2]
        if axis is None and needle is not None:
            axis = needle
        if axis is None:
            axis = default_axis
            notes.append(f"{where}: seed {n + 1} has no orientation; axis {default_axis.tolist()} (RAS) assumed")
        seeds.append(Seed(p, axis, source.reference_air_kerma_rate_u * decay,
                          label if len(runs) == 1 else f"{label}-{n + 1}"))
    return seeds
