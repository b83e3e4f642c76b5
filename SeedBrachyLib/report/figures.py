"""Report figures as PNG bytes (matplotlib, Agg canvas, no pyplot state): DVH and dose slices.

Dose in Gy, positions in mm; isodose lines at :data:`ISODOSE_PCT` % of the prescription.
"""

from __future__ import annotations

import io

import numpy as np

from .slices import sample, seeds_near

ISODOSE_PCT = (50, 90, 100, 150, 200)
ISODOSE_COLOURS = {50: "#1f77ff", 90: "#00b050", 100: "#ffd700", 150: "#ff7f0e", 200: "#d62728"}
STRUCTURE_COLOURS = ("#e41a1c", "#ff00ff", "#00ced1", "#8a2be2", "#a0522d", "#ff69b4", "#4daf4a", "#808000",
                     "#1e90ff", "#ff8c00")
CT_WINDOW_HU = (-160.0, 240.0)  # soft-tissue window (level 40, width 400 HU)
SEED_LENGTH_MM = 4.5


def structure_colours(names):
    """A fixed colour per structure name (targets first in the order given)."""
    return {n: STRUCTURE_COLOURS[i % len(STRUCTURE_COLOURS)] for i, n in enumerate(names)}


def _png(fig, dpi=130):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return buf.getvalue()


def dvh_png(evaluations, colours, prescription_gy):
    """Cumulative DVH (volume % vs dose Gy) of every structure; ``evaluations`` label -> PlanEvaluation.

    One evaluation: solid lines. Two (e.g. pre-plan and post-plan): the first dashed, the second solid.
    The dose axis ends at 3 x Rx (hotter doses near the seeds are off the plot).
    """
    from matplotlib.figure import Figure
    fig = Figure(figsize=(8.0, 4.6))
    ax = fig.add_subplot(1, 1, 1)
    styles = ["-"] if len(evaluations) == 1 else ["--", "-"]
    top = 3.0 * prescription_gy
    for (label, evaluation), style in zip(evaluations.items(), styles):
        for name, s in evaluation.structures.items():
            dose, pct, _ = s.dvh.curve(np.linspace(0.0, top, 601))
            tag = name if len(evaluations) == 1 else f"{name} ({label})"
            ax.plot(dose, pct, style, color=colours.get(name, "k"), linewidth=1.6, label=tag)
    ax.axvline(prescription_gy, color="#444", linewidth=0.8, linestyle=":")
    ax.text(prescription_gy, 101.5, f" Rx {prescription_gy:g} Gy", fontsize=8, va="bottom", color="#444")
    ax.set_xlim(0.0, top)
    ax.set_ylim(0.0, 105.0)
    ax.set_xlabel("Dose [Gy]")
    ax.set_ylabel("Volume receiving at least the dose [%]")
    ax.grid(True, linewidth=0.4, alpha=0.6)
    ax.legend(fontsize=7.5, loc="upper right", ncol=2 if len(ax.lines) > 8 else 1)
    fig.tight_layout()
    return _png(fig)


def slices_png(planes, dose, dose_grid, prescription_gy, structures, colours, seeds=(), ct=None, ct_grid=None,
               seed_within_mm=3.0):
    """The planes side by side: CT (soft-tissue window) if given, isodose lines, structure contours and seeds.

    Args:
        planes: :class:`~.slices.SlicePlane` list (e.g. axial, coronal, sagittal).
        dose, dose_grid: dose (Gy) ``[k, j, i]`` and its grid.
        prescription_gy: Rx (Gy); isodose lines at :data:`ISODOSE_PCT` % of it.
        structures: list of (name, weights or mask ``[k, j, i]``, grid); contour at half a voxel.
        colours: structure name -> colour.
        seeds: :class:`~SeedBrachyLib.seeds.Seed` list; those within ``seed_within_mm`` (mm) of a plane are
            drawn there (their axis projected on the plane, 4.5 mm long).
    """
    from matplotlib.figure import Figure
    fig = Figure(figsize=(4.0 * len(planes), 4.9))
    handles = {}
    for n, plane in enumerate(planes):
        ax = fig.add_axes([n / len(planes) + 0.04 / len(planes), 0.22, 0.92 / len(planes), 0.72])
        _draw_plane(ax, plane, dose, dose_grid, prescription_gy, structures, colours, seeds, ct, ct_grid,
                    seed_within_mm, handles)
    fig.legend(handles=list(handles.values()), loc="lower center", ncol=min(6, len(handles)), fontsize=7.5,
               frameon=False)
    return _png(fig, dpi=120)


def _draw_plane(ax, plane, dose, dose_grid, prescription_gy, structures, colours, seeds, ct, ct_grid,
                seed_within_mm, handles):
    from matplotlib.lines import Line2D
    extent = (plane.u[0], plane.u[-1], plane.v[0], plane.v[-1])
    if ct is not None:
        image = sample(ct, ct_grid, plane, fill=-1000.0)
        ax.imshow(image, cmap="gray", vmin=CT_WINDOW_HU[0], vmax=CT_WINDOW_HU[1], origin="lower", extent=extent)
    else:
        ax.set_facecolor("#202020")
    d = sample(dose, dose_grid, plane, fill=np.nan)
    finite = np.where(np.isfinite(d), d, 0.0)
    for pct in ISODOSE_PCT:
        level = pct / 100.0 * prescription_gy
        if finite.max() >= level:
            ax.contour(plane.u, plane.v, finite, levels=[level], colors=[ISODOSE_COLOURS[pct]], linewidths=1.1)
        handles.setdefault(f"iso{pct}", Line2D([], [], color=ISODOSE_COLOURS[pct], linewidth=1.1,
                                                label=f"{pct}% = {level:.0f} Gy"))
    for name, weights, grid in structures:
        w = sample(np.asarray(weights, dtype=np.float32), grid, plane, fill=0.0)
        if w.max() >= 0.5 > w.min():
            ax.contour(plane.u, plane.v, w, levels=[0.5], colors=[colours.get(name, "w")], linewidths=1.5,
                       linestyles="--")
            handles.setdefault(name, Line2D([], [], color=colours.get(name, "w"), linewidth=1.5, linestyle="--",
                                            label=name))
    near = seeds_near(list(seeds), plane, seed_within_mm)
    h = SEED_LENGTH_MM / 2.0
    for u, v, au, av, _ in near:
        ax.plot([u - h * au, u + h * au], [v - h * av, v + h * av], color="#00ffff", linewidth=2.6,
                solid_capstyle="round")
    if near:
        handles.setdefault("seeds", Line2D([], [], color="#00ffff", linewidth=2.6,
                                           label=f"seeds within {seed_within_mm:g} mm of the plane"))
    ax.set_xlim(extent[0], extent[1])
    ax.set_ylim(extent[2], extent[3])
    ax.set_aspect("equal")
    ax.tick_params(labelsize=6.5)
    ax.set_xlabel("mm from the target centre", fontsize=7)
    ax.set_title(f"{plane.name.capitalize()}: {len(near)} seeds shown", fontsize=9)
    left, right, bottom, top = plane.edges
    style = dict(color="#ffff66", fontsize=10, fontweight="bold", transform=ax.transAxes)
    ax.text(0.015, 0.5, left, ha="left", va="center", **style)
    ax.text(0.985, 0.5, right, ha="right", va="center", **style)
    ax.text(0.5, 0.015, bottom, ha="center", va="bottom", **style)
    ax.text(0.5, 0.985, top, ha="center", va="top", **style)
