"""DICOM RT in and out: CT series, RT Structure Set, brachytherapy RT Plan (permanent seeds), RT Dose.

Positions are RAS mm everywhere in SeedBrachy and LPS mm in the files; :mod:`.geometry` converts at this
boundary only. Readers turn every malformed, missing or undecodable attribute into an
:class:`~SeedBrachyLib.errors.InputError` naming the file and attribute; writers never replace a file
unless asked (``overwrite=True``) and mark every plan UNAPPROVED (research use).

=========================================  ====================================================================
``read_ct_series(folder)``                 (HU ``[k, j, i]``, Grid, :class:`ImageSeries`) of a CT series
``write_ct_series(folder, hu, grid)``      CT slices; the ImageSeries an RT Structure Set references
``read_rtstruct(path, grid)``              list of :class:`Roi` (fractional masks ``[k, j, i]`` on ``grid``)
``write_rtstruct(path, rois, grid, ct)``   closed planar contours on the CT's slices
``read_rtdose(path)``                      (dose Gy ``[k, j, i]``, Grid, :class:`DoseInfo`)
``write_rtdose(path, dose, grid, ...)``    Gy, PHYSICAL, PLAN, 32-bit with Dose Grid Scaling
``read_rtplan(path, implant_datetime)``    :class:`PlanSeeds` (seeds with S_K at implant, sources, decay)
``write_rtplan(path, seeds, model, ...)``  Brachy PERMANENT / LDR, one Application Setup, one Channel per seed
``read_dicom_folder(folder)``              :class:`DicomCase`: CT + structure set + plan + dose of a folder
``write_dicom_case(folder, ...)``          all four objects of a case, linked by their UIDs
=========================================  ====================================================================
"""

from .ct import ImageSeries, read_ct_headers, read_ct_series, write_ct_series
from .dataset import Study
from .folder import DicomCase, read_dicom_folder, write_dicom_case
from .rtdose import DoseInfo, read_rtdose, write_rtdose
from .rtplan import PlanSeeds, SourceInfo, read_rtplan, write_rtplan
from .rtstruct import Roi, read_rtstruct, write_rtstruct

__all__ = ["DicomCase", "DoseInfo", "ImageSeries", "PlanSeeds", "Roi", "SourceInfo", "Study", "read_ct_headers",
           "read_ct_series",
           "read_dicom_folder", "read_rtdose", "read_rtplan", "read_rtstruct", "write_ct_series", "write_dicom_case",
           "write_rtdose", "write_rtplan", "write_rtstruct"]
