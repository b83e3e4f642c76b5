"""What a report says, section by section, built from the library's results (dose Gy, positions mm RAS).

Sections (keys of the level-1 headings, in order; absent inputs leave their section out):
``identification``, ``summary``, ``goals``, ``source``, ``checks``, ``dvh``, ``slices``, ``needles``,
``seeds``, ``order``, ``comparison``, ``notes``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from .. import RESEARCH_NOTICE, __version__
from ..sources import DEFAULT_U_PER_MCI, u_to_mci
from .document import Document, Figure, Heading, Paragraph, Table
from .records import metric_unit, structure_metrics

NOTICE = (f"RESEARCH USE ONLY - NOT FOR CLINICAL DECISIONS. {RESEARCH_NOTICE} Every number in this report "
          "comes from a research implementation of AAPM TG-43U1 and must be verified independently before any "
          "clinical use.")
TARGET_COLUMNS = ("volume_cc", "D98", "D90", "D50", "D100", "Dmean", "Dmax", "V90", "V100", "V150", "V200")
OAR_COLUMNS = ("volume_cc", "D2cc", "D1cc", "D0.1cc", "Dmax", "Dmean")
SLICE_VIEWS = ("axial", "coronal", "sagittal")


@dataclass
class ReportContent:
    """Inputs of a report. Only ``title``, ``prescription_gy`` and ``evaluation`` are required.

    Attributes:
        title: e.g. "Pre-plan", "Plan evaluation", "Post-implant verification".
        identification: label -> value, as the input carries it (patient name and ID, study, plan label...).
        prescription_gy: Rx (Gy).
        evaluation: :class:`~SeedBrachyLib.dvh.PlanEvaluation` of the dose reported.
        checks: :class:`~SeedBrachyLib.checks.CheckResult` list.
        model: :class:`~SeedBrachyLib.sources.SourceModel` or None (dose from another system).
        strength_u: S_K per seed (U); ``u_per_mci`` the mCi conversion shown with it (U/mCi).
        dose, dose_grid: dose (Gy) ``[k, j, i]`` and its :class:`~SeedBrachyLib.grid.Grid`, for the slices.
        structures: contours on the slices: :class:`~SeedBrachyLib.structures.Structure` objects or
            (name, mask or voxel fractions ``[k, j, i]``, :class:`~SeedBrachyLib.grid.Grid`) tuples; masks on
            the CT grid show structures whole (a Structure on the dose grid ends at the grid's edge).
        target: structure the slices are centred on (default: the first target).
        ct, ct_grid: CT (HU) behind the slices, optional.
        seeds: :class:`~SeedBrachyLib.seeds.Seed` list.
        loading: :class:`~SeedBrachyLib.planning.loading_sheet.NeedleLoading` list (the loading sheet).
        order: :class:`~SeedBrachyLib.planning.order.SeedOrder` or None.
        goals: :class:`~SeedBrachyLib.planning.goal_status.GoalStatus` list (the optimiser's goals) or None.
        comparison: :class:`~SeedBrachyLib.postimplant.comparison.Comparison` (pre vs post) or None.
        robustness: :class:`~SeedBrachyLib.planning.robustness.RobustnessResult` (placement robustness) or None.
        pre_evaluation: the pre-plan's evaluation, drawn dashed on the DVH beside ``evaluation`` (post).
        method: lines on how the inputs were made (planning, detection, registration...).
        notes: further remarks.
    """

    title: str
    prescription_gy: float
    evaluation: object
    identification: dict = field(default_factory=dict)
    checks: list = field(default_factory=list)
    model: object = None
    strength_u: float | None = None
    u_per_mci: float = DEFAULT_U_PER_MCI
    dose: np.ndarray | None = None
    dose_grid: object = None
    structures: list = field(default_factory=list)
    target: str | None = None
    ct: np.ndarray | None = None
    ct_grid: object = None
    seeds: list = field(default_factory=list)
    loading: list = field(default_factory=list)
    order: object = None
    goals: list | None = None
    comparison: object = None
    robustness: object = None
    pre_evaluation: object = None
    method: list = field(default_factory=list)
    notes: list = field(default_factory=list)

    def target_name(self):
        if self.target:
            return self.target
        targets = [n for n, s in self.evaluation.structures.items() if s.role == "target"]
        return targets[0] if targets else None


def fmt(value, unit=""):
    """A number for a table: Gy and % with 1 decimal, cc with 2, indices with 3; 'n/a' if undefined."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    digits = {"cc": 2, "": 3, "seeds": 0}.get(unit, 1)
    return f"{value:.{digits}f}"


def _sentence(text):
    """``text`` ending with exactly one full stop."""
    return text.rstrip().rstrip(".") + "."


def _header(name):
    unit = metric_unit(name)
    return "Volume [cc]" if name == "volume_cc" else f"{name} [{unit}]"


def _metric_tables(evaluation, key):
    out = []
    for role, columns, title in (("target", TARGET_COLUMNS, "Targets"), ("oar", OAR_COLUMNS, "Organs at risk")):
        names = [n for n, s in evaluation.structures.items() if s.role == role]
        if not names:
            continue
        rows = []
        for name in names:
            m = structure_metrics(evaluation, name)
            rows.append([name] + [fmt(m[c], metric_unit(c)) for c in columns])
        caption = (f"{title}: Dx = minimum dose to the hottest x % of the structure, Dxcc to the hottest x cc; "
                   f"Vx = % of the structure receiving >= x % of {evaluation.prescription_gy:g} Gy; n/a = undefined "
                   "(structure smaller than the volume asked).")
        out.append(Table(("Structure",) + tuple(_header(c) for c in columns), tuple(rows), caption, f"{key}-{role}"))
    return out


def _identification(content):
    rows = [(k, str(v)) for k, v in content.identification.items()]
    rows.append(("Report", content.title))
    rows.append(("Software", f"SeedBrachy {__version__}"))
    return Table(("Item", "Value"), tuple(rows), key="identification-table")


def _summary(content):
    ev, rx = content.evaluation, content.prescription_gy
    lines = [f"Prescription {rx:g} Gy (permanent implant, total dose to complete decay)."]
    target = content.target_name()
    if target:
        m = structure_metrics(ev, target)
        lines.append(f"Target {target}: " + ", ".join(
            f"{'volume' if k == 'volume_cc' else k} {fmt(m[k], metric_unit(k))} {metric_unit(k)}"
            for k in ("volume_cc", "D90", "D100", "V100", "V150", "V200")) + ".")
    if content.seeds:
        s = content.strength_u or float(np.median([x.strength_u for x in content.seeds]))
        lines.append(f"{len(content.seeds)} seeds of {s:.3f} U ({float(u_to_mci(s, content.u_per_mci)):.3f} mCi at "
                     f"{content.u_per_mci:.3f} U/mCi)" + (f" on {len(content.loading)} needles." if content.loading
                                                           else "."))
    if content.checks:
        failed = [c for c in content.checks if not c.passed]
        lines.append(f"Checks: {len(content.checks) - len(failed)} of {len(content.checks)} pass"
                     + ("; not met or not evaluated: " + ", ".join(f"{c.structure} {c.goal} ({c.status})"
                                                                   for c in failed) + "." if failed else "."))
    lines.append(_sentence(f"Dose: {ev.dose_description}") if ev.dose_description else "")
    return [Paragraph(line) for line in lines if line]


def _goals(content):
    from ..planning.goal_status import unmet_message
    rows = tuple((g.goal, fmt(g.achieved, g.unit) + f" {g.unit}", "met" if g.met else "NOT MET")
                 for g in content.goals)
    blocks = []
    message = unmet_message(content.goals)
    if message:
        blocks.append(Paragraph(f"WARNING: {message} The optimiser returned its best attempt; change the needles, "
                                "the seed strength or the goals.", "warning"))
    else:
        blocks.append(Paragraph("Every planning goal is met (values from the DVH of the final plan)."))
    blocks.append(Table(("Planning goal", "Achieved", "Status"), rows, key="goals-table", status_column=2,
                        caption="Goals given to the optimiser, checked on the final plan's DVH."))
    return blocks


def _source(content):
    blocks = []
    m = content.model
    if m is not None:
        rows = [("Model", f"{m.name} ({m.key})"), ("Radionuclide", m.radionuclide),
                ("Dose-rate constant", f"{m.dose_rate_constant:.3f} cGy h^-1 U^-1"),
                ("Active length", f"{m.active_length_mm:.2f} mm"), ("Half-life", f"{m.half_life_days:g} d"),
                ("Data source", m.citation)]
        if content.strength_u:
            rows.insert(5, ("Strength per seed", f"S_K = {content.strength_u:.3f} U = "
                                                 f"{float(u_to_mci(content.strength_u, content.u_per_mci)):.3f} mCi "
                                                 f"(apparent activity at {content.u_per_mci:.3f} U/mCi)"))
        blocks.append(Table(("Item", "Value"), tuple(rows), key="source-table"))
    else:
        blocks.append(Paragraph("Dose from another system (no seed model used here)."))
    blocks.append(Paragraph(_sentence(f"Dose calculation: {content.evaluation.dose_description or 'as given'}")
                            + " DVH metrics are exact for the sampled dose (no dose bins); partial-volume voxels "
                            "count only their inside part."))
    blocks += [Paragraph(line) for line in content.method]
    return blocks


def _checks(checks, key, caption):
    sources = list(dict.fromkeys(c.source for c in checks))
    rows = tuple((c.status, c.structure, c.goal, fmt(c.measured, c.unit) + f" {c.unit}",
                  f"{c.comparator} {c.limit:g} {c.unit}", f"[{sources.index(c.source) + 1}]") for c in checks)
    blocks = [Table(("Status", "Structure", "Goal", "Measured", "Limit", "Source"), rows, caption, key,
                    status_column=0)]
    blocks += [Paragraph(f"[{i + 1}] {s}", "small") for i, s in enumerate(sources)]
    return blocks


def _dvh(content, colours):
    from .figures import dvh_png
    evaluations = ({"pre-plan": content.pre_evaluation, "post-plan": content.evaluation}
                   if content.pre_evaluation is not None else {"plan": content.evaluation})
    caption = "Cumulative DVH (exact, from the sampled dose); dotted line: prescription."
    if content.pre_evaluation is not None:
        caption += " Dashed: pre-plan; solid: post-plan."
    return [Figure(dvh_png(evaluations, colours, content.prescription_gy), caption, "dvh-figure")]


def _slices(content, colours):
    from .figures import ISODOSE_PCT, slices_png
    from .slices import plane_through, target_view
    target = content.target_name()
    structs = [(s.name, s.weights, s.grid) if hasattr(s, "weights") else tuple(s) for s in content.structures]
    structs = [s for s in structs if s[0] != "Body"]
    by_name = {name: (mask, grid) for name, mask, grid in structs}
    if target in by_name:
        center, half = target_view(*by_name[target])
    else:
        center, half = target_view(content.dose >= content.prescription_gy, content.dose_grid)
    planes = [plane_through(v, center, half, pixel_mm=max(0.25, half / 200.0)) for v in SLICE_VIEWS]
    png = slices_png(planes, content.dose, content.dose_grid, content.prescription_gy, structs, colours,
                     content.seeds, content.ct, content.ct_grid)
    c = center
    caption = (f"Axial, coronal and sagittal planes through the centre of {target or 'the prescription isodose'} "
               f"at RAS ({c[0]:.1f}, {c[1]:.1f}, {c[2]:.1f}) mm; isodose lines at "
               f"{', '.join(str(p) for p in ISODOSE_PCT)} % of {content.prescription_gy:g} Gy; dashed: contours; "
               "cyan: seeds within 3 mm of the plane. Radiological view: patient's right on the left (axial, "
               "coronal), anterior on the left (sagittal).")
    return [Figure(png, caption, "slices-figure")]


def _needles(loading):
    rows = tuple((n.needle, n.hole or "-", f"({n.entry_ras_mm[0]:.1f}, {n.entry_ras_mm[1]:.1f}, "
                  f"{n.entry_ras_mm[2]:.1f})", f"{n.axial_angle_deg:.1f}", f"{n.tilt_deg:.1f}", f"{n.depth_mm:.1f}",
                  str(n.n_seeds), ", ".join(f"{d:.1f}" for d in n.seed_depths_mm)) for n in loading)
    caption = ("Loading sheet: entry on the skin (mm RAS); axial angle in the axial plane from anterior-to-posterior, "
               "positive towards the patient's left; tilt to the axial plane, positive cranial; depth from the skin "
               "entry to the tip (mm); seed depths (mm from the skin entry, deepest first).")
    return [Table(("Needle", "Template hole", "Entry R, A, S [mm]", "Axial angle [deg]", "Tilt [deg]",
                   "Depth [mm]", "Seeds", "Seed depths [mm]"), rows, caption, "needles-table")]


def _seed_list(seeds):
    rows = tuple((s.label or str(i + 1), f"{s.position[0]:.1f}", f"{s.position[1]:.1f}", f"{s.position[2]:.1f}",
                  f"({s.axis[0]:.2f}, {s.axis[1]:.2f}, {s.axis[2]:.2f})", f"{s.strength_u:.3f}")
                 for i, s in enumerate(seeds))
    return [Table(("Seed", "R [mm]", "A [mm]", "S [mm]", "Axis (R, A, S)", "S_K [U]"), rows,
                  "Seed centres in the RAS frame of the planning CT.", "seeds-table")]


def _order(order):
    rows = (("Seeds to order", f"{order.n_order} = {order.n_planned} planned + {order.n_spares} spares"),
            ("Per seed", f"{order.activity_mci:.3f} mCi = {order.strength_u:.3f} U (S_K = A x {order.u_per_mci:.3f} "
                         "U/mCi)"),
            ("Implanted", f"{order.total_planned_mci:.2f} mCi = {order.total_planned_u:.2f} U"),
            ("Ordered", f"{order.total_order_mci:.2f} mCi = {order.n_order * order.strength_u:.2f} U"))
    if order.model_name:
        rows = (("Seed model", order.model_name),) + rows
    return [Table(("Item", "Value"), rows, key="order-table")]


def _comparison(comparison):
    rows = []
    for r in comparison.rows:
        label = f" [{r.unit}]" if r.unit not in ("", "seeds") else ""
        rel = "" if math.isnan(r.relative_pct) else f"{r.relative_pct:+.1f}"
        rows.append((r.structure, r.metric + label, fmt(r.pre, r.unit), fmt(r.post, r.unit),
                     fmt(r.difference, r.unit), rel))
    blocks = [Paragraph(_sentence(f"Pre-plan: {comparison.pre_description}")),
              Paragraph(_sentence(f"Post-plan: {comparison.post_description}")),
              Table(("Structure", "Metric", "Pre-plan", "Post-plan", "Post - pre", "Change [%]"), tuple(rows),
                    key="comparison-table", caption="Same structures and dose grid for both plans.")]
    if comparison.checks:
        blocks.append(Heading("Published thresholds on the post-plan", "comparison-checks", 2))
        blocks += _checks(comparison.checks, "comparison-checks-table", "")
    return blocks


def _robustness(result):
    """Placement robustness: the error model, each metric's spread over the samples, each goal's probability."""
    rows = [[structure, _header(metric), *(fmt(s[k], s["unit"]) for k in ("nominal", "mean", "p5", "p50", "p95"))]
            for (structure, metric), s in result.spread().items()]
    blocks = [Paragraph(_sentence(f"{result.n_samples} simulated implants around the plan ({result.errors.describe()})"
                                  "; each sample's dose is TG-43 at the structures' points")),
              Table(("Structure", "Metric", "Nominal", "Mean", "5th percentile", "Median", "95th percentile"),
                    tuple(rows), "Metrics over the simulated implants.", "robustness-metrics")]
    if result.probabilities:
        blocks.append(Table(("Goal", "Probability [%]", "95% CI [%]", "Samples", "Source"),
                            tuple([p.goal, f"{100 * p.p:.1f}", f"{100 * p.ci_low:.1f}-{100 * p.ci_high:.1f}",
                                   f"{p.k}/{p.n}", p.source] for p in result.probabilities),
                            "How often each goal holds (Wilson score intervals).", "robustness-goals"))
    return blocks + [Paragraph(n, "small") for n in result.notes]


def build_document(content):
    """The :class:`~.document.Document` of a report (sections as in the module notes)."""
    from .figures import structure_colours
    ev = content.evaluation
    ident = " | ".join(str(v) for v in list(content.identification.values())[:3])
    doc = Document(f"SeedBrachy {content.title}", ident)
    doc.add(Paragraph(NOTICE, "notice"))
    doc.add(Heading("Identification", "identification"), _identification(content))
    doc.add(Heading("Summary", "summary"), *_summary(content))
    if content.goals is not None:
        doc.add(Heading("Planning goals", "goals"), *_goals(content))
    doc.add(Heading("Seed model and dose calculation", "source"), *_source(content))
    if content.checks:
        doc.add(Heading("Checks", "checks"), *_checks(content.checks, "checks-table",
                                                       "Checks on the reported dose; sources below."))
    if content.robustness is not None:
        doc.add(Heading("Placement robustness", "robustness"), *_robustness(content.robustness))
    names = list(ev.structures) + [s.name if hasattr(s, "name") else s[0] for s in content.structures]
    colours = structure_colours(list(dict.fromkeys(names)))
    doc.add(Heading("Dose-volume histogram", "dvh"), *_dvh(content, colours), *_metric_tables(ev, "dvh"))
    if content.dose is not None and content.dose_grid is not None:
        doc.add(Heading("Dose slices through the target", "slices"), *_slices(content, colours))
    if content.loading:
        doc.add(Heading("Needles and seed loading", "needles"), *_needles(content.loading))
    if content.seeds:
        doc.add(Heading("Seed positions", "seeds"), *_seed_list(content.seeds))
    if content.order is not None:
        doc.add(Heading("Seed order", "order"), *_order(content.order))
    if content.comparison is not None:
        doc.add(Heading("Pre-plan vs post-implant", "comparison"), *_comparison(content.comparison))
    notes = list(ev.notes) + list(content.notes)
    if notes:
        doc.add(Heading("Notes", "notes"), *[Paragraph(n) for n in dict.fromkeys(notes)])
    doc.add(Paragraph(NOTICE, "notice"))
    return doc

