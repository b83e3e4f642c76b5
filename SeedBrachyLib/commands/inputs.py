"""Reading a case from disk for the commands: CT (DICOM folder or a volume file), structures, plan, dose.

* Images: a folder of DICOM slices (:func:`SeedBrachyLib.dicomrt.read_ct_series`) or one volume file
  SimpleITK reads (NRRD, NIfTI, MetaImage...; geometry converted from LPS to RAS at this boundary).
* Structures: an RT Structure Set file, a folder holding one (partial volumes kept), or a folder of labelmap
  files (one per structure, named by the file stem, every non-zero voxel inside), resampled (nearest) onto the
  CT grid.
* Plans: an RT Plan file (brachy, seeds) or a seeds JSON (``{"space": "RAS", "seeds": [...]}`` as
  ``detect`` and ``plan`` write it).
* Dose: an RT Dose file or a dose volume file (Gy).

Structure names are matched exactly, or without regard to case when that is unique.
Positions mm RAS, dose Gy, strength U.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..dicomrt.dataset import has_dicom_header, read_dataset, text
from ..errors import InputError
from ..grid import Grid

VOLUME_SUFFIXES = (".nrrd", ".nhdr", ".nii", ".nii.gz", ".mha", ".mhd")


@dataclass
class Image:
    """A 3D image: ``array`` ``[k, j, i]`` on ``grid``, where it came from, and the identification it carries."""

    array: np.ndarray
    grid: Grid
    source: str
    identification: dict = field(default_factory=dict)
    series: object = None  # the dicomrt ImageSeries when read from DICOM

    @property
    def slice_thickness_mm(self):
        """Reconstructed slice thickness (mm) from the DICOM header (SliceThickness), or None (not DICOM, or
        not given)."""
        return None if self.series is None else self.series.slice_thickness_mm


def _exists(path, what):
    p = Path(path).expanduser()
    if not p.exists():
        raise InputError(f"{what} {str(path)!r} does not exist")
    return p


def is_volume_file(path):
    return str(path).lower().endswith(VOLUME_SUFFIXES)


def study_identification(study):
    """Patient and study identification of a dicomrt Study, as labels -> text (empty values left out)."""
    items = (("Patient name", str(study.patient_name).replace("^", " ").strip()), ("Patient ID", study.patient_id),
             ("Birth date", study.patient_birth_date), ("Study date", study.study_date),
             ("Study ID", study.study_id), ("Accession number", study.accession_number),
             ("Study description", study.study_description), ("Study UID", study.study_instance_uid))
    return {k: str(v) for k, v in items if v}


def read_image(path, what="CT", progress=None):
    """The :class:`Image` at ``path``: a DICOM series folder or a volume file (HU for a CT)."""
    p = _exists(path, what)
    if p.is_dir():
        from ..dicomrt import read_ct_series
        array, grid, series = read_ct_series(p, progress=progress)
        ident = study_identification(series.study)
        if series.description:
            ident[f"{what} series"] = series.description
        return Image(array, grid, str(p), ident, series)
    if is_volume_file(p):
        import SimpleITK as sitk

        from ..itk_image import from_sitk
        try:
            image = sitk.ReadImage(str(p))
        except RuntimeError as exc:
            raise InputError(f"{what} {str(p)!r} could not be read: {str(exc).splitlines()[-1][:160]}") from None
        array, grid = from_sitk(image)
        return Image(array, grid, str(p), {f"{what} file": p.name})
    raise InputError(f"{what} {str(p)!r} is neither a folder of DICOM slices nor a volume file "
                     f"({', '.join(VOLUME_SUFFIXES)})")


def _rtstruct_in(folder):
    hits = [f for f in sorted(Path(folder).iterdir())
            if f.is_file() and has_dicom_header(f) and _modality(f) == "RTSTRUCT"]
    if len(hits) > 1:
        raise InputError(f"{str(folder)!r} holds {len(hits)} RT Structure Sets: name the file")
    return hits[0] if hits else None


def _modality(path):
    try:
        return text(read_dataset(path, stop_before_pixels=True), "Modality", str(path), required=False)
    except InputError:  # an unreadable file is simply not the one sought
        return ""


def rtstruct_path(path):
    """The RT Structure Set file ``path`` names (the file, or the one in a folder), or None."""
    p = _exists(path, "structures")
    return p if p.is_file() and has_dicom_header(p) else (_rtstruct_in(p) if p.is_dir() else None)


def contour_grid(path, like):
    """A grid for the structures of the RT Structure Set ``path`` without its CT: the direction and in-plane
    spacing of ``like`` (e.g. the dose grid), one slice on each contour plane, covering every contour point (mm).

    Contours are planar on the CT's slices; rasterising them on other slices would lose whole slices.
    """
    from ..dicomrt.rtstruct import contour_points
    points = contour_points(path)
    if not points:
        raise InputError(f"RT Structure Set {str(path)!r} has no closed planar contour")
    ras = np.vstack(points)
    local = ras @ like.direction  # coordinates along the grid axes (mm)
    planes = np.unique(np.round(local[:, 2], 2))
    steps = np.diff(planes)
    spacing_k = float(np.median(steps)) if len(steps) else float(like.spacing[2])
    if len(steps) and np.abs(steps / spacing_k - np.rint(steps / spacing_k)).max() > 0.05:
        raise InputError(f"RT Structure Set {str(path)!r}: contour planes are not evenly spaced; give the CT (--ct)")
    spacing = np.array([like.spacing[0], like.spacing[1], spacing_k])
    lo, hi = local.min(axis=0) - spacing, local.max(axis=0) + spacing
    lo[2], hi[2] = planes[0], planes[-1]
    dims = np.floor((hi - lo) / spacing + 1e-6).astype(int) + 1
    return Grid(like.direction @ lo, spacing, like.direction, tuple(int(d) for d in dims))


def read_structures(path, grid, frame_of_reference_uid=None, progress=None):
    """Structures on ``grid`` (the CT's): name -> :class:`~SeedBrachyLib.structures.Structure` on ``grid``.

    An RT Structure Set keeps its partial volumes: each weight is the fraction (0..1) of the voxel inside the
    contours (:func:`SeedBrachyLib.dicomrt.read_rtstruct`), and ``source`` is the contours' fine mask (``Roi.fine``,
    the sub-voxel geometry for the DVH) when there is one. A labelmap's voxels are wholly in or out (weights 0
    or 1, resampled nearest onto ``grid``). ``structure.weights >= 0.5`` is the voxel set where one is needed.
    """
    from ..structures import Structure
    p = _exists(path, "structures")
    rtstruct = rtstruct_path(p)
    if rtstruct is not None:
        from ..dicomrt import read_rtstruct
        rois = read_rtstruct(rtstruct, grid, frame_of_reference_uid=frame_of_reference_uid, progress=progress)
        return {roi.name: Structure(roi.name, roi.fraction, grid, source=roi.fine) for roi in rois}
    files = [p] if p.is_file() else [f for f in sorted(p.iterdir()) if f.is_file() and is_volume_file(f)]
    if not files:
        raise InputError(f"structures {str(p)!r}: no RT Structure Set and no labelmap files "
                         f"({', '.join(VOLUME_SUFFIXES)}) found")
    out = {}
    for f in files:
        image = read_image(f, "labelmap")
        mask = np.asarray(image.array) != 0
        if not _same_geometry(image.grid, grid):
            from ..itk_image import resample
            mask = resample(mask, image.grid, grid, interpolator="nearest")
        name = f.name[: -len(next(s for s in VOLUME_SUFFIXES if f.name.lower().endswith(s)))]
        if not mask.any():
            raise InputError(f"labelmap {str(f)!r} ({name}) has no voxel inside the CT")
        out[name] = Structure(name, mask.astype(np.float32), grid)
    return out


def _same_geometry(a, b, tol=1e-4):
    return (tuple(a.dims) == tuple(b.dims) and np.allclose(a.origin, b.origin, atol=tol)
            and np.allclose(a.spacing, b.spacing, atol=tol) and np.allclose(a.direction, b.direction, atol=tol))


def pick(structures, name, what="structure"):
    """The key of ``structures`` named ``name``: exact, else unique without regard to case; InputError else."""
    if name in structures:
        return name
    hits = [k for k in structures if k.lower() == str(name).lower()]
    if len(hits) == 1:
        return hits[0]
    raise InputError(f"{what} {name!r} not found among the structures: have {', '.join(sorted(structures))}")


@dataclass
class PlanInput:
    """Seeds of an existing plan (mm RAS, U), the seed model key if the file names one, and its notes."""

    seeds: list
    model_key: str = None
    prescription_gy: float = None
    source: str = ""
    notes: list = field(default_factory=list)
    frame_of_reference_uid: str = None


def read_plan(path, default_axis=(0.0, 0.0, 1.0)):
    """Seeds from an RT Plan file or a seeds JSON file (:func:`SeedBrachyLib.report.records.seed_records`)."""
    p = _exists(path, "plan")
    if p.is_file() and has_dicom_header(p):
        from ..dicomrt import read_rtplan
        plan = read_rtplan(p, default_axis=default_axis)
        return PlanInput(plan.seeds, plan.model_key, plan.prescription_gy, str(p), list(plan.notes),
                         plan.frame_of_reference_uid)
    if p.suffix.lower() == ".json":
        return PlanInput(seeds_from_json(p), source=str(p))
    raise InputError(f"plan {str(p)!r} is neither an RT Plan (DICOM) nor a seeds JSON file")


def seeds_from_json(path, strength_u=None):
    """Seeds of a ``{"space": "RAS", "seeds": [...]}`` file; ``strength_u`` (U) for entries that carry none."""
    from ..seeds import Seed
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InputError(f"seeds file {str(path)!r} is not valid JSON ({exc})") from None
    if not isinstance(data, dict) or data.get("space") != "RAS" or not isinstance(data.get("seeds"), list):
        raise InputError(f"seeds file {str(path)!r}: need {{\"space\": \"RAS\", \"seeds\": [...]}}")
    seeds = []
    for n, item in enumerate(data["seeds"]):
        s = item.get("strength_u", strength_u)
        if s is None:
            raise InputError(f"seeds file {str(path)!r}: seed {n + 1} has no strength_u (U); give one")
        seeds.append(Seed(item["center_ras_mm"], item.get("axis_ras") or (0.0, 0.0, 1.0), float(s),
                          item.get("label") or f"S{n + 1}"))
    if not seeds:
        raise InputError(f"seeds file {str(path)!r} holds no seed")
    return seeds


def read_dose(path, frame_of_reference_uid=None):
    """(dose Gy ``[k, j, i]``, Grid, description) from an RT Dose file or a dose volume file (Gy)."""
    p = _exists(path, "dose")
    if p.is_file() and has_dicom_header(p):
        from ..dicomrt import read_rtdose
        dose, grid, info = read_rtdose(p, frame_of_reference_uid=frame_of_reference_uid)
        return np.asarray(dose, dtype=np.float32), grid, f"RT Dose {p.name} ({info.dose_type}, {info.summation})"
    image = read_image(p, "dose")
    return np.asarray(image.array, dtype=np.float32), image.grid, f"dose volume {p.name} (Gy)"
