"""The phantom series: a TUNING set (for calibrating the detector) and a SCORING set (for the figures only).

The two sets differ in random seeds AND in configuration (slice thicknesses, pixel sizes, kernels, noise,
obliquity, seed models and counts); nothing of the SCORING set may be used to choose a parameter.
:func:`build` renders one case into a :class:`Phantom`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from . import anatomy as anatomy_lib
from . import implant as implant_lib
from . import physics


@dataclass(frozen=True)
class Case:
    """One series. Lengths mm, noise HU; ``interpolated_from``: the series is reconstructed at this
    thickness with an increment equal to it, then interpolated linearly to ``increment``."""

    name: str
    anatomy: str
    random_seed: int
    pixel: tuple = (0.8, 0.8)
    thickness: float = 1.0
    increment: float = 1.0
    interpolated_from: float | None = None
    fov: tuple = (180.0, 150.0)
    length: float = 60.0
    tilt_deg: tuple = (0.0, 0.0, 0.0)
    psf_sigma: tuple = (0.4, 0.4)
    noise_hu: float = 20.0
    streak_hu: float = 150.0
    clip_hu: float | None = 3071.0
    model: str = "Ag rod"
    needle_seeds: int = 30
    groups: dict = field(default_factory=lambda: {"end-to-end": 2, "side-by-side": 2, "bundle": 1, "clump3": 1})
    in_bone: int = 2
    near_bone: int = 3
    migrated: int = 2
    clips: int = 1
    fiducials: int = 1
    calcifications: int = 4
    header_thickness: bool = True  # the DICOM header gives the slice thickness

    def conditions(self):
        """Series-level condition names for the per-condition tallies."""
        t = self.interpolated_from or self.thickness
        out = [f"slices {'<=' if t <= 2 else '>'} 2 mm", f"{t:g} mm slices"]
        if self.interpolated_from or self.thickness > self.increment + 1e-6:
            out.append("interpolated/overlapping")
        out.append("clipped 3071" if self.clip_hu else "extended HU")
        if any(self.tilt_deg):
            out.append("oblique")
        if abs(self.pixel[0] - self.pixel[1]) > 1e-6:
            out.append("anisotropic pixels")
        if self.noise_hu >= 30:
            out.append("noise >= 30 HU")
        out.append(self.anatomy)
        return out


@dataclass
class Phantom:
    case: Case
    ct: np.ndarray  # [k, j, i] int16 HU
    series: physics.Series
    seeds: list  # implant_lib.TrueSeed
    others: list  # distractor dicts
    slice_thickness_mm: float | None  # as the DICOM header would give it (None: not given)
    seed_mass: float = 0.0  # HU mm^3 of one seed above tissue (for diagnostics only)


def build(case, dtype=np.int16):
    """Render ``case``: anatomy, seeds, clips, fiducials, calcifications, streaks, noise, storage."""
    rng = np.random.default_rng(case.random_seed)
    anat = anatomy_lib.pelvis(rng) if case.anatomy == "pelvis" else anatomy_lib.thorax(rng)
    direction = physics.rotation(*case.tilt_deg)
    centre = anat.target[0] + np.array([0.0, 0.0, 0.0])
    native_thickness = case.interpolated_from or case.thickness
    native_increment = case.interpolated_from or case.increment
    final = physics.series_around(centre, case.fov, case.pixel, case.increment, native_thickness, case.length,
                                  case.psf_sigma, case.clip_hu, direction)
    native = final if case.interpolated_from is None else physics.series_around(
        centre, case.fov, case.pixel, native_increment, native_thickness, case.length + 2 * native_increment,
        case.psf_sigma, case.clip_hu, direction)
    needle = (0.15, 0.1, 1.0) if case.anatomy == "pelvis" else (0.6, 0.45, 0.66)
    seeds = implant_lib.implant(anat, rng, case.needle_seeds, case.groups, case.in_bone, case.near_bone,
                                case.migrated, needle)
    # keep only seeds wholly inside the final series (with a margin of one capsule length)
    ijk = np.array([final.to_ijk(s.position) for s in seeds]).reshape(-1, 3)
    margin = 4.5 / final.spacing
    inside = np.all((ijk >= margin) & (ijk <= np.array(final.dims) - 1 - margin), axis=1)
    seeds = [s for s, ok in zip(seeds, inside) if ok]
    others = implant_lib.distractors(anat, rng, seeds, case.clips, case.fiducials, case.calcifications)

    image = _anatomy_image(anat, native)
    spec = physics.SEED_MODELS[case.model]
    marker_hu = rng.uniform(*spec["marker_hu"])
    ti_hu = rng.uniform(*spec["ti_hu"])
    metal = []
    for s in seeds:
        pts, w = physics.seed_points(s.position, s.axis, case.model, marker_hu, ti_hu)
        physics.splat(image, native, pts, w)
        metal.append((pts, w))
    for o in others:
        if o["kind"] == "clip":
            pts, w = physics.clip_points(o["center"], o["direction"], o["opening"], o["length"], o["hu"])
            metal.append((pts, w))
        elif o["kind"] == "fiducial":
            pts, w = physics.rod_points(o["center"], o["direction"], o["length"], o["diameter"], o["hu"])
            metal.append((pts, w))
        else:
            pts, w = physics.ball_points(o["center"], 0, o["hu"] - 40.0, semi=o["semi"])
        physics.splat(image, native, pts, w)
    image += physics.streaks(native, metal, case.streak_hu, rng)
    image += physics.textured_noise(native, case.noise_hu, rng)
    if case.interpolated_from is not None:
        image = physics.interpolate_slices(image, native, final)
    ct = physics.store(image, case.clip_hu, dtype)
    thickness = (case.interpolated_from or case.thickness) if case.header_thickness else None
    mass = float(physics.seed_points(np.zeros(3), np.array([0, 0, 1.0]), case.model, marker_hu, ti_hu)[1].sum())
    return Phantom(case, ct, final, seeds, others, thickness, mass)


def _anatomy_image(anat, series):
    """Anatomy (HU) averaged over sub-slices across the slice profile, blurred in-plane by the PSF."""
    width, _ = series.ssp
    n_sub = max(1, math.ceil(width / 0.8))
    offsets = ((np.arange(n_sub) + 0.5) / n_sub - 0.5) * width
    ni, nj, nk = series.dims
    jj, ii = np.meshgrid(np.arange(nj), np.arange(ni), indexing="ij")
    plane = np.stack([ii, jj, np.zeros_like(ii)], -1).astype(float)
    out = np.empty(series.shape, np.float32)
    kdir = series.direction[:, 2]
    for k in range(nk):
        plane[..., 2] = k
        pts = series.to_ras(plane)
        out[k] = np.mean([anat.hu(pts + o * kdir) for o in offsets], axis=0)
    return physics.blur_continuous(out, series)


_PELVIS_GROUPS = {"end-to-end": 2, "side-by-side": 2, "bundle": 1, "clump3": 1}
_THORAX_GROUPS = {"end-to-end": 1, "side-by-side": 2, "bundle": 1, "clump3": 1}

TUNING = [
    Case("T1 pelvis 1 mm", "pelvis", 101, thickness=1.0, increment=1.0),
    Case("T2 pelvis 3 mm", "pelvis", 102, thickness=3.0, increment=3.0, noise_hu=15),
    Case("T3 thorax 2 mm", "thorax", 103, pixel=(0.7, 0.7), thickness=2.0, increment=2.0, groups=_THORAX_GROUPS),
    Case("T4 pelvis 5 mm", "pelvis", 104, thickness=5.0, increment=5.0, noise_hu=25, length=80.0),
    Case("T5 thorax 5 at 2.5", "thorax", 105, thickness=5.0, increment=2.5, groups=_THORAX_GROUPS, length=70.0),
    Case("T6 pelvis ext 1.5", "pelvis", 106, thickness=1.5, increment=1.5, clip_hu=None, model="W rod"),
    Case("T7 thorax oblique", "thorax", 107, thickness=1.25, increment=1.25, tilt_deg=(15.0, 0.0, 10.0),
         groups=_THORAX_GROUPS, psf_sigma=(0.35, 0.5)),
    Case("T8 pelvis aniso 2.5", "pelvis", 108, pixel=(0.7, 0.95), thickness=2.5, increment=2.5,
         model="Au beads", noise_hu=30, streak_hu=300),
    # more 5 mm series (session 11): T4 and T5 did not show the failure seen on 5 mm slices
    Case("T9 pelvis 5 mm coarse", "pelvis", 109, pixel=(0.95, 0.95), thickness=5.0, increment=5.0, length=85.0,
         noise_hu=20, model="Au beads"),
    Case("T10 thorax 5 mm W", "thorax", 110, pixel=(0.75, 0.75), thickness=5.0, increment=5.0, groups=_THORAX_GROUPS,
         length=85.0, model="W rod", psf_sigma=(0.55, 0.55), noise_hu=22),
    Case("T11 pelvis 5 mm W", "pelvis", 111, pixel=(0.85, 0.85), thickness=5.0, increment=5.0, length=85.0,
         model="W rod", psf_sigma=(0.45, 0.45), noise_hu=16),
    Case("T12 thorax 5 mm Ag", "thorax", 112, pixel=(0.9, 0.9), thickness=5.0, increment=5.0, groups=_THORAX_GROUPS,
         length=85.0, noise_hu=18, psf_sigma=(0.5, 0.5)),
]

SCORING = [
    Case("S1 pelvis 0.625", "pelvis", 2001, pixel=(0.75, 0.75), thickness=0.625, increment=0.625, length=45.0,
         psf_sigma=(0.45, 0.45)),
    Case("S2 pelvis 1.25 overlap", "pelvis", 2002, thickness=1.25, increment=0.8, model="W rod", noise_hu=14),
    Case("S3 thorax 2 mm", "thorax", 2003, pixel=(0.78, 0.78), thickness=2.0, increment=2.0, groups=_THORAX_GROUPS,
         noise_hu=28, streak_hu=250),
    Case("S4 pelvis 2 mm interp", "pelvis", 2004, thickness=2.0, increment=2.0, interpolated_from=5.0,
         length=70.0, model="Au beads"),
    Case("S5 pelvis 5 mm", "pelvis", 2005, pixel=(0.9, 0.9), thickness=5.0, increment=5.0, length=90.0,
         noise_hu=18),
    Case("S6 thorax 5 mm", "thorax", 2006, thickness=5.0, increment=5.0, groups=_THORAX_GROUPS, length=90.0,
         model="W rod", psf_sigma=(0.5, 0.5)),
    Case("S7 pelvis extended 1 mm", "pelvis", 2007, thickness=1.0, increment=1.0, clip_hu=None, noise_hu=35,
         streak_hu=350),
    Case("S8 thorax oblique 1.5", "thorax", 2008, pixel=(0.72, 0.72), thickness=1.5, increment=1.5,
         tilt_deg=(-20.0, 8.0, 0.0), groups=_THORAX_GROUPS),
    Case("S9 pelvis aniso 3 mm", "pelvis", 2009, pixel=(0.65, 0.9), thickness=3.0, increment=3.0,
         psf_sigma=(0.35, 0.55), noise_hu=12),
    Case("S10 thorax 3 mm no header", "thorax", 2010, thickness=3.0, increment=1.5, groups=_THORAX_GROUPS,
         header_thickness=False, clip_hu=None, length=70.0),
]
