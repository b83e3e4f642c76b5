"""Simulated implant: the planned seeds displaced by realistic placement errors (for tests and the demo).

Error model, in this order, all drawn from ``numpy.random.default_rng(random_seed)`` so a given
random seed always gives the same implant:

1. needles: the seeds are grouped by needle track (collinear along the needle direction); each
   needle gets a depth error along its direction (``depth_sd_mm``) and a lateral shift across it
   (``lateral_sd_mm`` per perpendicular axis), shared by all its seeds;
2. seeds: each seed gets an independent isotropic placement error (``placement_sd_mm`` per axis,
   so the mean 3D displacement is about 1.6 x that) and its axis is tilted by ``axis_tilt_sd_deg``;
3. ``n_lost`` seeds are lost (not in the patient: extruded, or migrated out of the scan);
4. ``n_migrated`` seeds slid back along their needle track by ``migration_mm`` (range, mm).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.spatial.transform import Rotation

from ..errors import InputError
from ..itk_image import resample
from ..seeds import Seed, seed_arrays
from ..vectors import perpendicular_basis, tilted
from .post_implant_ct import post_implant_ct


@dataclass(frozen=True)
class SimulatedImplant:
    """The seeds as implanted, with what happened to each planned seed.

    Attributes:
        seeds: implanted seeds (mm RAS, unit axes, U), labels kept from the plan.
        plan_index: index in the planned list of each implanted seed.
        displacement_mm: distance (mm) of each implanted seed from its planned position.
        lost: labels (or indices, when unlabelled) of the planned seeds that are not in the patient.
        migrated: labels of the seeds that slid along their needle track.
        needle_count: number of needle tracks found in the plan.
        settings: the error model parameters used (mm, degrees, counts, random seed).
    """

    seeds: list
    plan_index: np.ndarray
    displacement_mm: np.ndarray
    lost: list
    migrated: list
    needle_count: int
    settings: dict

    def describe(self):
        """One line: counts and displacement statistics (mm)."""
        d = self.displacement_mm
        return (f"simulated implant: {len(self.seeds)} seeds in place of {len(self.seeds) + len(self.lost)} "
                f"planned on {self.needle_count} needles; displacement mean {d.mean():.1f} mm, max "
                f"{d.max():.1f} mm; lost {len(self.lost)}, migrated {len(self.migrated)} "
                f"(random seed {self.settings['random_seed']})")


def needle_tracks(positions, direction, tolerance_mm=2.0):
    """Group seed positions (n, 3) mm into needle tracks along the unit ``direction``.

    Seeds whose projections on the plane across ``direction`` lie within ``tolerance_mm`` of a
    track's first seed share that track. Returns an int array (n,) of track numbers 0..m-1.
    """
    d = np.asarray(direction, dtype=float)
    d = d / np.linalg.norm(d)
    across = positions - np.outer(positions @ d, d)
    track = -np.ones(len(positions), dtype=int)
    anchors = []
    for n, p in enumerate(across):
        for m, a in enumerate(anchors):
            if np.linalg.norm(p - a) <= tolerance_mm:
                track[n] = m
                break
        else:
            anchors.append(p)
            track[n] = len(anchors) - 1
    return track


def _tilted(axis, tilt_rad, rng):
    return tilted(axis, tilt_rad, rng.uniform(0.0, 2.0 * np.pi))


def simulate_implant(plan_seeds, random_seed=0, placement_sd_mm=1.5, depth_sd_mm=2.0, lateral_sd_mm=1.0,
                     axis_tilt_sd_deg=10.0, n_lost=1, n_migrated=1, migration_mm=(8.0, 15.0),
                     needle_direction=None):
    """Displace the planned seeds by a realistic implant error; return a SimulatedImplant.

    Args:
        plan_seeds: planned seeds (mm RAS, U).
        random_seed: integer; the same value always gives the same implant.
        placement_sd_mm: per-seed random error, standard deviation per axis (mm).
        depth_sd_mm: per-needle error along the needle (mm, standard deviation).
        lateral_sd_mm: per-needle shift across the needle, per perpendicular axis (mm, SD).
        axis_tilt_sd_deg: per-seed axis tilt (degrees, SD of the tilt angle).
        n_lost: planned seeds missing from the implant (count).
        n_migrated: seeds slid back along their needle track (count).
        migration_mm: (min, max) slide distance (mm), drawn uniformly.
        needle_direction: unit vector (RAS) of the needles, entry -> tip; default: the mean seed axis.
    """
    positions, axes, _ = seed_arrays(plan_seeds)
    n = len(plan_seeds)
    for name, value in (("placement_sd_mm", placement_sd_mm), ("depth_sd_mm", depth_sd_mm),
                        ("lateral_sd_mm", lateral_sd_mm), ("axis_tilt_sd_deg", axis_tilt_sd_deg)):
        if not value >= 0:
            raise InputError(f"{name} {value!r} invalid: must be >= 0")
    if not (0 <= n_lost and 0 <= n_migrated and n_lost + n_migrated < n):
        raise InputError(f"n_lost {n_lost} and n_migrated {n_migrated} invalid: each >= 0 and together "
                         f"fewer than the {n} planned seeds")
    lo, hi = (float(m) for m in migration_mm)
    if not 0 <= lo <= hi:
        raise InputError(f"migration range {migration_mm!r} mm invalid: need 0 <= min <= max")
    if needle_direction is None:
        ref = axes[0]
        needle_direction = np.sum(axes * np.sign(axes @ ref + 1e-12)[:, None], axis=0)
    d = np.asarray(needle_direction, dtype=float)
    if not np.linalg.norm(d) > 0:
        raise InputError(f"needle direction {needle_direction!r} invalid: must be a non-zero vector")
    d = d / np.linalg.norm(d)
    rng = np.random.default_rng(random_seed)

    track = needle_tracks(positions, d)
    n_tracks = int(track.max()) + 1
    u, v = perpendicular_basis(d)
    shift = (rng.normal(0.0, depth_sd_mm, n_tracks)[:, None] * d
             + rng.normal(0.0, lateral_sd_mm, n_tracks)[:, None] * u
             + rng.normal(0.0, lateral_sd_mm, n_tracks)[:, None] * v)
    new_pos = positions + shift[track] + rng.normal(0.0, placement_sd_mm, (n, 3))
    tilts = np.radians(np.abs(rng.normal(0.0, axis_tilt_sd_deg, n)))
    new_axes = np.array([_tilted(a, t, rng) for a, t in zip(axes, tilts)])

    order = rng.permutation(n)
    lost_idx = np.sort(order[:n_lost])
    migrated_idx = np.sort(order[n_lost:n_lost + n_migrated])
    new_pos[migrated_idx] -= rng.uniform(lo, hi, len(migrated_idx))[:, None] * d

    def name(i):
        return plan_seeds[i].label or str(i)

    keep = np.setdiff1d(np.arange(n), lost_idx)
    seeds = [Seed(new_pos[i], new_axes[i], plan_seeds[i].strength_u, plan_seeds[i].label) for i in keep]
    settings = {"random_seed": random_seed, "placement_sd_mm": placement_sd_mm, "depth_sd_mm": depth_sd_mm,
                "lateral_sd_mm": lateral_sd_mm, "axis_tilt_sd_deg": axis_tilt_sd_deg, "n_lost": n_lost,
                "n_migrated": n_migrated, "migration_mm": (lo, hi)}
    return SimulatedImplant(seeds=seeds, plan_index=keep,
                            displacement_mm=np.linalg.norm(new_pos[keep] - positions[keep], axis=1),
                            lost=[name(i) for i in lost_idx], migrated=[name(i) for i in migrated_idx],
                            needle_count=n_tracks, settings=settings)


#: The patient's motion between the pre-plan CT and the post-implant scan in the built-in case:
#: rotation vector (deg) and shift (mm) of the post-implant frame -> pre-plan frame.
PATIENT_MOTION_DEG = (0.0, 0.0, 4.0)
PATIENT_MOTION_MM = (6.0, -4.0, 9.0)


def patient_motion(rotvec_deg=PATIENT_MOTION_DEG, shift_mm=PATIENT_MOTION_MM):
    """4x4 RAS matrix post-implant frame -> pre-plan frame for a rotation vector (deg) and a shift (mm)."""
    m = np.eye(4)
    m[:3, :3] = Rotation.from_rotvec(np.radians(rotvec_deg)).as_matrix()
    m[:3, 3] = shift_mm
    return m


@dataclass(frozen=True)
class RescannedImplant:
    """A simulated implant scanned after the patient moved.

    Attributes:
        implant: the :class:`SimulatedImplant` (seed positions in the pre-plan frame).
        scan: the :class:`~.post_implant_ct.PostImplantScan` before the motion (its ground truth).
        ct: int16 ``[k, j, i]`` post-implant CT (HU) on ``grid``, in the moved patient's frame.
        grid: the post-implant CT grid.
        post_to_pre: 4x4 RAS matrix post-implant frame -> pre-plan frame (the registration's truth).
        true_positions_post: implanted seed centres (mm RAS) in the post-implant frame.
    """

    implant: SimulatedImplant
    scan: object
    ct: np.ndarray
    grid: object
    post_to_pre: np.ndarray
    true_positions_post: np.ndarray


def rescanned_implant(plan_seeds, case, random_seed=1, spacing_mm=(0.8, 0.8, 1.0), motion=None):
    """Implant ``plan_seeds`` (:func:`simulate_implant`), scan them in ``case``'s anatomy
    (:func:`~.post_implant_ct.post_implant_ct`) and move the patient (``motion``, default :func:`patient_motion`)."""
    implant = simulate_implant(plan_seeds, random_seed=random_seed, needle_direction=case.needle_direction)
    truth = patient_motion() if motion is None else np.asarray(motion, dtype=float)
    scan = post_implant_ct(implant.seeds, spacing_mm=spacing_mm, random_seed=random_seed,
                           node_center=case.node_center)
    moved = resample(scan.ct.astype(np.float32), scan.grid, scan.grid, truth, "linear", -1000.0)
    inverse = np.linalg.inv(truth)
    positions = np.array([s.position for s in implant.seeds]) @ inverse[:3, :3].T + inverse[:3, 3]
    return RescannedImplant(implant, scan, np.rint(moved).astype(np.int16), scan.grid, truth, positions)
