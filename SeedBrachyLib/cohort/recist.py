"""RECIST 1.1 tumour response (Eisenhauer et al., Eur J Cancer 45:228-247, 2009).

Measurements are in mm: the long axis of a non-nodal lesion, the short axis of a lymph node.
Time is in months since the implant (0 = baseline). Rules implemented, with the guideline's section:

* Target lesions (3.2, 4.3.1): at baseline a non-nodal target is >= 10 mm long axis and a nodal
  target >= 15 mm short axis (anything smaller is refused as a target); at most 5 targets.
  The sum of diameters adds long axes (non-nodal) and short axes (nodes).
* Target response (4.3.1): CR = every non-nodal target gone (0 mm) and every nodal target < 10 mm
  short axis (so the sum need not be 0); PD = sum >= 20% above the smallest sum on study (the nadir,
  baseline included) AND >= 5 mm above it; PR = sum >= 30% below the baseline sum; SD otherwise.
  PD is tested first (a sum can be 30% below baseline and 20% above a lower nadir). Enter 5 mm for a
  lesion "too small to measure" and 0 mm for one that has disappeared (4.3.1 notes).
* A target not assessed at a visit makes the target response NE, unless the lesions measured
  already meet PD (4.3.1 "Missing assessments and inevaluable designation").
* Non-target response (4.3.2): PD = unequivocal progression of an existing non-target lesion;
  CR = all non-target lesions gone and every non-target node < 10 mm short axis; NE if one is not
  assessed (and no PD); Non-CR/Non-PD otherwise.
* Overall response per visit (4.4, Tables 1 and 2): a new lesion is PD; target or non-target PD is
  PD; target CR with non-target CR (or none) is CR; target CR with non-target Non-CR/Non-PD or NE is
  PR; target PR is PR; target SD is SD; target NE is NE. Non-target disease only (Table 2):
  CR, Non-CR/Non-PD, NE or PD.
* Best overall response (4.4.1): the best visit response from the first visit until progression
  (CR > PR > SD > Non-CR/Non-PD); SD (and Non-CR/Non-PD) counts only at >= ``min_sd_months`` after
  baseline (the protocol's minimum interval, here 1.5 months = 6 weeks by default); without such a
  visit the best response is PD if progression was seen, else NE. Unconfirmed by default; with
  ``confirm_months`` the confirmation of Table 3 (non-randomised trials) is applied, where SD after a
  CR counts as progression (Table 3 footnote a): CR then SD is SD if the CR visit meets the minimum
  interval, otherwise PD.

Objective response = CR or PR; local control = CR, PR, SD or Non-CR/Non-PD.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from ..errors import InputError

CR, PR, SD, PD, NE = "CR", "PR", "SD", "PD", "NE"
NON_CR_NON_PD = "Non-CR/Non-PD"
RESPONSES = (CR, PR, SD, NON_CR_NON_PD, PD, NE)
OBJECTIVE = frozenset({CR, PR})
LOCAL_CONTROL = frozenset({CR, PR, SD, NON_CR_NON_PD})
ROLES = ("target", "non_target", "new")
NON_TARGET_STATUS = ("absent", "present", "progression")
MAX_TARGETS = 5
NODE_NORMAL_MM = 10.0        # a node < 10 mm short axis is normal (CR)
NODE_TARGET_MM = 15.0        # a nodal target is >= 15 mm short axis at baseline
LESION_TARGET_MM = 10.0      # a non-nodal target is >= 10 mm long axis at baseline
PR_DECREASE = 0.30           # PR: >= 30% below the baseline sum
PD_INCREASE = 0.20           # PD: >= 20% above the nadir ...
PD_ABSOLUTE_MM = 5.0         # ... and >= 5 mm above it
_EPS = 1e-9


@dataclass(frozen=True)
class Lesion:
    """One lesion at one visit.

    ``diameter_mm``: long axis (non-nodal) or short axis (node), mm; None = not assessed. Needed for
    targets; optional for non-target nodes (< 10 mm = normal). ``status`` (non-target only):
    "absent", "present", "progression" (unequivocal) or None = not assessed.
    """

    lesion_id: str
    role: str
    nodal: bool = False
    diameter_mm: float | None = None
    status: str | None = None

    def __post_init__(self):
        if self.role not in ROLES:
            raise InputError(f"lesion {self.lesion_id!r}: role {self.role!r} is not one of {ROLES}")
        if self.diameter_mm is not None and not (math.isfinite(self.diameter_mm) and self.diameter_mm >= 0):
            raise InputError(f"lesion {self.lesion_id!r}: diameter {self.diameter_mm!r} mm must be finite and >= 0")
        if self.status is not None and self.status not in NON_TARGET_STATUS:
            raise InputError(f"lesion {self.lesion_id!r}: status {self.status!r} is not one of {NON_TARGET_STATUS}")


@dataclass(frozen=True)
class Visit:
    """The lesions assessed at one time point (months since the implant; 0 = baseline)."""

    month: float
    lesions: tuple[Lesion, ...] = field(default_factory=tuple)


@dataclass(frozen=True)
class VisitResponse:
    """Response at one follow-up visit, with the numbers it was decided from (mm, %)."""

    month: float
    target: str | None
    non_target: str | None
    new_lesion: bool
    overall: str
    sum_mm: float | None
    change_from_baseline_pct: float | None
    change_from_nadir_pct: float | None


def _targets(visit):
    return [les for les in visit.lesions if les.role == "target"]


def _check_baseline(baseline):
    targets = _targets(baseline)
    if len(targets) > MAX_TARGETS:
        raise InputError(f"baseline has {len(targets)} target lesions; RECIST 1.1 allows at most {MAX_TARGETS}")
    for les in targets:
        need = NODE_TARGET_MM if les.nodal else LESION_TARGET_MM
        axis = "short" if les.nodal else "long"
        if les.diameter_mm is None or les.diameter_mm < need - _EPS:
            raise InputError(f"baseline target {les.lesion_id!r}: {axis} axis {les.diameter_mm} mm; a "
                             f"{'nodal' if les.nodal else 'non-nodal'} target must be >= {need:g} mm")
    if any(les.role == "new" for les in baseline.lesions):
        raise InputError("a 'new' lesion cannot be recorded at baseline")
    return [les.lesion_id for les in targets]


def sum_of_diameters(lesions):
    """Sum of target diameters, mm (long axes of non-nodal targets, short axes of nodes)."""
    return float(sum(les.diameter_mm for les in lesions if les.role == "target"))


def target_response(current, baseline_sum, nadir_sum):
    """Target response of one visit's target lesions (list of Lesion) against the baseline and nadir sums (mm)."""
    measured = [les for les in current if les.diameter_mm is not None]
    total = float(sum(les.diameter_mm for les in measured))
    progressed = total - nadir_sum >= PD_INCREASE * nadir_sum - _EPS and total - nadir_sum >= PD_ABSOLUTE_MM - _EPS
    if progressed:
        return PD
    if len(measured) < len(current):
        return NE
    if all((les.diameter_mm < NODE_NORMAL_MM) if les.nodal else (les.diameter_mm == 0) for les in current):
        return CR
    if baseline_sum - total >= PR_DECREASE * baseline_sum - _EPS:
        return PR
    return SD


def non_target_response(lesions):
    """Non-target response of one visit's non-target lesions; None when there are none."""
    if not lesions:
        return None
    if any(les.status == "progression" for les in lesions):
        return PD

    def normal(les):
        if les.nodal and les.diameter_mm is not None:
            return les.diameter_mm < NODE_NORMAL_MM
        return les.status == "absent"

    if any(les.status is None and les.diameter_mm is None for les in lesions):
        return NE
    return CR if all(normal(les) for les in lesions) else NON_CR_NON_PD


def overall_response(target, non_target, new_lesion):
    """Overall visit response from the target and non-target responses (RECIST 1.1 Tables 1 and 2)."""
    if new_lesion or target == PD or non_target == PD:
        return PD
    if target is None:  # non-target disease only (Table 2)
        if non_target is None:
            raise InputError("a visit with neither target nor non-target lesions cannot be assessed")
        return non_target
    if target == CR:
        return CR if non_target in (CR, None) else PR
    return target  # PR, SD or NE (non-target non-PD or NE)


def evaluate(visits):
    """Visit responses of one patient: ``visits`` (Visit, any order; exactly one at month 0) -> [VisitResponse]."""
    visits = sorted(visits, key=lambda v: v.month)
    if not visits or visits[0].month != 0 or (len(visits) > 1 and visits[1].month == 0):
        raise InputError(f"need exactly one baseline visit at month 0; got months {[v.month for v in visits]}")
    baseline, follow_up = visits[0], visits[1:]
    target_ids = _check_baseline(baseline)
    baseline_sum = sum_of_diameters(baseline.lesions)
    nadir = baseline_sum
    out = []
    for visit in follow_up:
        by_id = {les.lesion_id: les for les in _targets(visit)}
        unknown = sorted(set(by_id) - set(target_ids))
        if unknown:
            raise InputError(f"month {visit.month:g}: target lesions {unknown} were not targets at baseline "
                             "(a lesion appearing after baseline is 'new')")
        current = [by_id.get(i, Lesion(i, "target")) for i in target_ids]
        new_lesion = any(les.role == "new" for les in visit.lesions)
        tgt = target_response(current, baseline_sum, nadir) if target_ids else None
        ntg = non_target_response([les for les in visit.lesions if les.role == "non_target"])
        complete = target_ids and all(les.diameter_mm is not None for les in current)
        total = sum_of_diameters(current) if complete else None
        out.append(VisitResponse(
            month=visit.month, target=tgt, non_target=ntg, new_lesion=new_lesion,
            overall=overall_response(tgt, ntg, new_lesion), sum_mm=total,
            change_from_baseline_pct=None if total is None or baseline_sum == 0 else
            100.0 * (total - baseline_sum) / baseline_sum,
            change_from_nadir_pct=None if total is None or nadir == 0 else 100.0 * (total - nadir) / nadir))
        if total is not None:
            nadir = min(nadir, total)
    return out


def best_overall_response(responses, min_sd_months=1.5, confirm_months=None):
    """Best overall response from a patient's visit responses (``evaluate`` output).

    ``confirm_months`` None: unconfirmed (the best visit response before progression). A number
    (e.g. 0.92 = 4 weeks): CR and PR must be confirmed (4.4.1, Table 3) by the next visit at least
    that long after: CR then CR is CR; CR then PR, or PR then PR or CR, is PR; an unconfirmed CR or PR
    counts as SD (if the SD interval is met). With confirmation, SD after a CR is progression (Table 3
    footnote a: disease seen after a true CR has reappeared): CR then SD is SD if the CR visit meets
    the SD interval, otherwise PD, as CR then PD. Of the readings Table 3 allows for CR then PR ("SD,
    PD or PR") this takes PR (the first CR re-read as a PR, the footnote's second case).
    """
    rank = {CR: 0, PR: 1, SD: 2, NON_CR_NON_PD: 3}
    visits = sorted(responses, key=lambda r: r.month)
    end = len(visits)  # the first visit with progression
    for i, r in enumerate(visits):
        if r.overall == PD or (confirm_months is not None and r.overall == SD
                               and any(v.overall == CR for v in visits[:i])):
            end = i
            break
    best = None
    for i, r in enumerate(visits[:end]):
        value = r.overall
        if confirm_months is not None and value in (CR, PR):
            later = next((v.overall for v in visits[i + 1:end] if v.month - r.month >= confirm_months), None)
            value = (CR if later == CR and value == CR else PR if later in (CR, PR) else SD)
        if value in (SD, NON_CR_NON_PD) and r.month < min_sd_months:
            continue
        if value in rank and (best is None or rank[value] < rank[best]):
            best = value
    if best is not None:
        return best
    return PD if end < len(visits) else NE


def response_at(responses, month, tolerance_months=0.5):
    """Overall response at the visit at ``month`` (+- tolerance); PD if progression was seen before; else NE."""
    for r in sorted(responses, key=lambda r: r.month):
        if abs(r.month - month) <= tolerance_months:
            return r.overall
        if r.overall == PD and r.month < month:
            return PD
    return NE


def normalise_response(value):
    """A response label as written in a table ('cr', 'Non-CR/Non-PD', ...) -> one of RESPONSES."""
    key = str(value).strip().upper().replace(" ", "").replace("_", "-")
    for r in RESPONSES:
        if key == r.upper().replace(" ", ""):
            return r
    raise InputError(f"response {value!r} is not one of {RESPONSES}")
