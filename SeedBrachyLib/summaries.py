"""Text shown to users: how a dose was computed, and the short summaries of an evaluation or a comparison.

Every number carries its unit and how it was computed; every summary ends with the research notice.
"""

from __future__ import annotations

import html

from . import RESEARCH_NOTICE
from .checks import INDICATIONS, format_checks


def describe_dose(model, n_seeds, grid, formalism="line", what="permanent implant", axes="", engine=""):
    """One line saying how a dose was computed, e.g. 'TG-43U1 line source, OncoSeed 6711, 29 seeds, ...'.

    ``model``: the :class:`~SeedBrachyLib.sources.SourceModel`; ``grid``: the dose grid; ``axes``: how the seed
    axes were obtained (post-plans); ``engine``: which dose engine ran (:func:`SeedBrachyLib.kernel.describe`).
    """
    axes = f" ({axes})" if axes else ""
    engine = f"; {engine}" if engine else ""
    return (f"TG-43U1 {formalism} source{axes}, {model.name}, {n_seeds} seeds, {what}; grid {grid.describe()}"
            f"{engine}. Research use only.")


def evaluation_summary(evaluation, check_results=()):
    """Target D90 and V100 of each target with the check results (PASS/FAIL/NOT EVALUATED, value, goal, source)."""
    lines = [f"{s.name}: D90 = {s.values['D90']:.1f} Gy, V100 = {s.values['V100']:.1f} % "
             f"(prescription {evaluation.prescription_gy:g} Gy)"
             for s in evaluation.structures.values() if s.role == "target"]
    if check_results:
        lines.append(format_checks(check_results).rstrip())
    lines += evaluation.notes
    lines.append(RESEARCH_NOTICE)
    return "\n".join(lines)


def comparison_summary(comparison):
    """Target D90 and V100 pre -> post, the seed count and the checks on the post-plan."""
    lines = [f"{r.structure} {r.metric}: {r.pre:.1f} -> {r.post:.1f} {r.unit} ({r.difference:+.1f})"
             for r in comparison.rows if r.metric in ("D90", "V100") and r.unit in ("Gy", "%")]
    lines += [check.describe() for check in comparison.checks]
    lines.append(RESEARCH_NOTICE)
    return "\n".join(lines)


def goals_help():
    """The goals of each indication as an HTML list (the module's help): the goal, the structure it is read on
    (as its source defines it) and the source."""
    items = "".join(f"<li>{html.escape(indication)}: {html.escape(goal.name)}, read on the {goal.structure} "
                    f"({html.escape(goal.source)})</li>" for indication, goals in INDICATIONS.items() for goal in goals)
    return f"<ul>{items}</ul>"
