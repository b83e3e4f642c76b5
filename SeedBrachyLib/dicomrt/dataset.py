"""DICOM datasets: the identity shared by one case's objects, new datasets, saving, safe reading.

* :class:`Study` -- patient, study and frame of reference of a case (UIDs kept, so the RT objects
  exported from SeedBrachy reference the CT they were made on).
* :func:`new_dataset` -- a dataset with the Patient, General Study, (RT) Series, General Equipment,
  Frame of Reference and SOP Common modules filled in; :func:`save` writes it (Explicit VR Little
  Endian, with file meta information) and never replaces an existing file unless told to.
* :func:`read_dataset`, :func:`read_object`, :func:`value`, :func:`sequence`, :func:`numbers` -- reading
  that turns every malformed, missing or undecodable attribute into an
  :class:`~SeedBrachyLib.errors.InputError` naming the file, the attribute and what is allowed.
"""

from __future__ import annotations

import datetime
import math
import mmap
import struct
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pydicom
from pydicom.datadict import dictionary_has_tag, dictionary_VR, tag_for_keyword
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.tag import Tag
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from .. import __version__
from ..errors import InputError

MANUFACTURER = "SeedBrachy"
#: Largest file read (bytes); larger files are refused before parsing.
MAX_FILE_BYTES = 2 << 30
#: Largest count of items or values accepted from a file's sequences and multi-valued attributes.
MAX_ITEMS = 1_000_000
UNDEFINED_LENGTH = 0xFFFFFFFF
#: Explicit VRs with a 32-bit value length (PS3.5 7.1.2).
LONG_LENGTH_VRS = {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"}


def _now():
    now = datetime.datetime.now()
    return now.strftime("%Y%m%d"), now.strftime("%H%M%S")


@dataclass(frozen=True)
class Study:
    """Patient, study and frame of reference shared by the DICOM objects of one case.

    Attributes (DICOM text values): patient name and ID, birth date (YYYYMMDD or ""), sex ("M", "F",
    "O" or ""), study instance UID, study date/time, study ID, accession number, study description,
    and the frame of reference UID of the patient coordinates (mm, LPS in the files).
    """

    patient_name: str = "Anonymous^SeedBrachy"
    patient_id: str = "SEEDBRACHY"
    patient_birth_date: str = ""
    patient_sex: str = ""
    study_instance_uid: str = field(default_factory=generate_uid)
    study_date: str = field(default_factory=lambda: _now()[0])
    study_time: str = field(default_factory=lambda: _now()[1])
    study_id: str = "1"
    accession_number: str = ""
    study_description: str = "SeedBrachy (research use)"
    frame_of_reference_uid: str = field(default_factory=generate_uid)

    @classmethod
    def of(cls, ds, where="DICOM file"):
        """The study of a dataset read from a file (frame of reference required)."""
        text = {k: str(value(ds, k, where, required=False, default="")) for k in (
            "PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyDate", "StudyTime", "StudyID",
            "AccessionNumber", "StudyDescription")}
        return cls(text["PatientName"], text["PatientID"], text["PatientBirthDate"], text["PatientSex"],
                   uid(ds, "StudyInstanceUID", where), text["StudyDate"], text["StudyTime"], text["StudyID"],
                   text["AccessionNumber"], text["StudyDescription"], uid(ds, "FrameOfReferenceUID", where))


def new_dataset(sop_class_uid, modality, study, series_description, series_instance_uid=None, series_number=1,
                frame_of_reference=True):
    """A dataset of ``sop_class_uid`` with the common modules filled in from ``study`` (:class:`Study`).

    A new SOP Instance UID is made; the series UID is new unless ``series_instance_uid`` is given.
    """
    date, time = _now()
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class_uid
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.SOPClassUID = sop_class_uid
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.InstanceCreationDate, ds.InstanceCreationTime = date, time
    ds.PatientName = study.patient_name
    ds.PatientID = study.patient_id
    ds.PatientBirthDate = study.patient_birth_date
    ds.PatientSex = study.patient_sex
    ds.StudyInstanceUID = study.study_instance_uid
    ds.StudyDate, ds.StudyTime = study.study_date, study.study_time
    ds.StudyID = study.study_id
    ds.AccessionNumber = study.accession_number
    ds.ReferringPhysicianName = ""
    if study.study_description:
        ds.StudyDescription = study.study_description
    ds.Modality = modality
    ds.SeriesInstanceUID = series_instance_uid or generate_uid()
    ds.SeriesNumber = series_number
    ds.SeriesDescription = series_description
    ds.SeriesDate, ds.SeriesTime = date, time
    if frame_of_reference:
        ds.FrameOfReferenceUID = study.frame_of_reference_uid
        ds.PositionReferenceIndicator = ""
    ds.Manufacturer = MANUFACTURER
    ds.ManufacturerModelName = "SeedBrachyLib"
    ds.SoftwareVersions = __version__
    return ds


def save(ds, path, overwrite=False):
    """Write ``ds`` to ``path`` as a DICOM file (Part 10); refuse to replace a file unless ``overwrite``."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise InputError(f"{str(path)!r} exists: choose a new file or pass overwrite=True to replace it")
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path


def ds_number(x):
    """A number as a DICOM DS string (at most 16 characters): exact repr when it fits."""
    x = float(x)
    if not math.isfinite(x):
        raise InputError(f"value {x!r} cannot be written to DICOM: numbers must be finite")
    text = repr(x)
    if text.endswith(".0"):
        text = text[:-2]
    return text if len(text) <= 16 else pydicom.valuerep.format_number_as_ds(x)


def sequence_of(items):
    """A pydicom Sequence of datasets."""
    return Sequence(list(items))


# ---------------------------------------------------------------------------- reading
def has_dicom_header(path):
    """True if ``path`` is a file with the DICOM Part 10 preamble ("DICM" at byte 128)."""
    try:
        with open(path, "rb") as f:
            f.seek(128)
            return f.read(4) == b"DICM"
    except OSError:
        return False


def read_dataset(path, what="DICOM file", stop_before_pixels=False):
    """The dataset of a DICOM file; an InputError naming the file if it is missing, too large or not DICOM."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{what} {str(path)!r} does not exist or is not a file")
    size = path.stat().st_size
    if size > MAX_FILE_BYTES:
        raise InputError(f"{what} {str(path)!r} is {size} bytes: files over {MAX_FILE_BYTES} bytes are refused")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = pydicom.dcmread(path, stop_before_pixels=stop_before_pixels, force=False)
            # parse every element now (pydicom reads lazily), so a damaged file fails here, named
            _walk(ds, 0)
            syntax = ds.file_meta.get("TransferSyntaxUID")
            if syntax is None or syntax not in pydicom.uid.AllTransferSyntaxes:
                raise InputError(f"{what} {str(path)!r}: transfer syntax {syntax!r} is not a DICOM transfer syntax")
            if syntax.is_little_endian and not syntax.is_deflated:
                _check_whole(path, what, syntax.is_implicit_VR)
    except InputError:
        raise
    except Exception as exc:  # noqa: BLE001 - pydicom raises many types for a damaged file
        raise InputError(f"{what} {str(path)!r} is not a readable DICOM file ({type(exc).__name__}: "
                         f"{_short(exc)})") from None
    return ds


def _check_whole(path, what, implicit_vr):
    """InputError if the file ends inside an element, a sequence or an item of undefined length: a cut file, of
    which pydicom reads what is there without a word (an RT Plan cut between two channels has fewer seeds)."""
    depth, pos = 0, 132
    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
        end = len(data)
        while pos + 8 <= end:
            group, elem = struct.unpack_from("<HH", data, pos)
            if group == 0xFFFE:  # item (E000), item delimiter (E00D), sequence delimiter (E0DD): no VR
                length = struct.unpack_from("<I", data, pos + 4)[0]
                if elem != 0xE000:
                    depth -= 1
                elif length == UNDEFINED_LENGTH:
                    depth += 1
                pos += 8 if elem != 0xE000 or length == UNDEFINED_LENGTH else 8 + length
                continue
            if implicit_vr and group != 0x0002:
                length, head = struct.unpack_from("<I", data, pos + 4)[0], 8
            elif bytes(data[pos + 4:pos + 6]) in LONG_LENGTH_VRS:
                length, head = (struct.unpack_from("<I", data, pos + 8)[0], 12) if pos + 12 <= end else (0, end)
            else:
                length, head = struct.unpack_from("<H", data, pos + 6)[0], 8
            if length == UNDEFINED_LENGTH:
                depth += 1
                length = 0
            pos += head + length
        tail_is_padding = pos < end and not any(data[pos:end])  # a few zero bytes after the last element
    if (pos != end and not tail_is_padding) or depth > 0:
        raise InputError(f"{what} {str(path)!r} is cut short: it ends inside "
                         f"{'an element or item' if pos != end else f'{depth} unclosed sequence(s) or item(s)'} "
                         f"({end} bytes): copy the file again")


def read_object(path, what, modality, sop_class_uid):
    """(dataset, name for messages) of the DICOM file ``path``, which must be a ``modality`` object of
    ``sop_class_uid`` (e.g. "RTPLAN", RT Plan Storage); InputError naming the file otherwise."""
    ds = read_dataset(path, what)
    where = str(path)
    found = text(ds, "Modality", where)
    if found != modality:
        raise InputError(f"{where}: modality {found[:16]!r} is not {modality}: not an {what}")
    found = uid(ds, "SOPClassUID", where)
    if found != sop_class_uid:
        raise InputError(f"{where}: SOP class {found} is not {sop_class_uid}: not an {what}")
    return ds, where


def _walk(ds, depth):
    """Parse every sequence of ``ds`` now (values of other elements stay raw until read)."""
    if depth > 16:
        raise InputError("sequences nested more than 16 deep")
    for tag in list(ds.keys()):
        raw = ds.get_item(tag)
        vr = getattr(raw, "VR", None)
        if vr is None and not tag.is_private:
            vr = dictionary_VR(tag) if dictionary_has_tag(tag) else None
        if vr == "SQ":
            items = ds[tag].value
            if len(items) > MAX_ITEMS:
                raise InputError(f"sequence {tag} has {len(items)} items")
            for item in items:
                _walk(item, depth + 1)


def _short(exc, limit=160):
    text = str(exc)
    return text if len(text) <= limit else text[:limit] + "..."


def value(ds, keyword, where, required=True, default=None):
    """``ds.<keyword>`` (decoded); missing or empty: InputError if ``required`` else ``default``."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            elem = ds[keyword] if keyword in ds else None
            v = None if elem is None else elem.value
    except Exception as exc:  # noqa: BLE001 - pydicom decodes values lazily and may raise any type
        raise InputError(f"{where}: attribute {keyword} cannot be decoded ({type(exc).__name__}: {_short(exc)})") \
            from None
    if elem is not None and elem.VR not in dictionary_VR(keyword).split(" or ") + ["UN"]:
        raise InputError(f"{where}: attribute {keyword} is encoded as {elem.VR}; the standard's VR is "
                         f"{dictionary_VR(keyword)}")
    if v is None or (hasattr(v, "__len__") and len(v) == 0 and not isinstance(v, (int, float))):
        if required:
            raise InputError(f"{where}: required attribute {keyword} is missing or empty")
        return default
    return v


def text(ds, keyword, where, required=True, default="", allowed=None):
    """A text attribute as ``str`` (stripped); ``allowed`` restricts it to those values (case-sensitive)."""
    v = value(ds, keyword, where, required, None)
    if v is None:
        return default
    if isinstance(v, (list, tuple, pydicom.multival.MultiValue)):
        v = "\\".join(str(x) for x in v)
    s = str(v).strip()
    if allowed is not None and s not in allowed:
        raise InputError(f"{where}: {keyword} = {s!r} is not allowed here: expected one of {sorted(allowed)}")
    return s


def uid(ds, keyword, where, required=True):
    """A UID attribute as ``str``, checked for the UID syntax (digits and dots, at most 64 characters)."""
    s = text(ds, keyword, where, required, None)
    if s is None:
        return None
    if len(s) > 64 or not s or any(c not in "0123456789." for c in s):
        raise InputError(f"{where}: {keyword} = {s[:80]!r} is not a valid UID (digits and dots, <= 64 characters)")
    return s


def numbers(ds, keyword, where, count=None, required=True, finite=True, minimum=None, maximum=None):
    """A numeric attribute as a list of floats: exactly ``count`` values if given, each finite and in range."""
    v = value(ds, keyword, where, required, None)
    if v is None:
        return None
    seq = list(v) if isinstance(v, (list, tuple, pydicom.multival.MultiValue, bytes)) else [v]
    if len(seq) > MAX_ITEMS:
        raise InputError(f"{where}: {keyword} has {len(seq)} values; at most {MAX_ITEMS} are accepted")
    try:
        out = [float(x) for x in seq]
    except (TypeError, ValueError, OverflowError):
        raise InputError(f"{where}: {keyword} = {str(v)[:80]!r} is not a list of numbers") from None
    if count is not None and len(out) != count:
        raise InputError(f"{where}: {keyword} has {len(out)} values; exactly {count} are needed")
    for x in out:
        if finite and not math.isfinite(x):
            raise InputError(f"{where}: {keyword} = {x!r} invalid: values must be finite")
        if minimum is not None and x < minimum:
            raise InputError(f"{where}: {keyword} = {x:g} invalid: must be >= {minimum:g}")
        if maximum is not None and x > maximum:
            raise InputError(f"{where}: {keyword} = {x:g} invalid: must be <= {maximum:g}")
    return out


def ds_array(ds, keyword, where, required=True, minimum=None, maximum=None):
    """A multi-valued DS attribute (e.g. ContourData) as a float64 array, parsed from the raw text when possible."""
    tag = tag_for_keyword(keyword)
    raw = ds.get_item(tag) if tag in ds else None
    if not isinstance(raw, RawDataElement) or raw.value is None:
        out = numbers(ds, keyword, where, required=required, minimum=minimum, maximum=maximum)
        return None if out is None else np.asarray(out)
    try:
        values = np.array(raw.value.decode("ascii").strip(" \x00").split("\\"), dtype=np.float64)
    except (UnicodeDecodeError, ValueError):
        raise InputError(f"{where}: {keyword} = {raw.value[:40]!r}... is not a list of decimal numbers") from None
    if values.size == 0 and required:
        raise InputError(f"{where}: required attribute {keyword} is missing or empty")
    bad = ~np.isfinite(values)
    if minimum is not None:
        bad |= values < minimum
    if maximum is not None:
        bad |= values > maximum
    if bad.any():
        raise InputError(f"{where}: {keyword} value {values[bad][0]!r} invalid: values must be finite"
                         f"{'' if minimum is None else f' and within [{minimum:g}, {maximum:g}]'}")
    return values


def set_ds_array(ds, keyword, values, decimals=4):
    """Set a multi-valued DS attribute from numbers, written as fixed-point text (fast for long arrays)."""
    text_value = "\\".join(f"{x:.{decimals}f}" for x in np.asarray(values, dtype=float).ravel()).encode("ascii")
    if len(text_value) % 2:
        text_value += b" "
    tag = tag_for_keyword(keyword)
    ds[tag] = RawDataElement(Tag(tag), "DS", len(text_value), text_value, 0, False, True)
    return len(text_value)


def number(ds, keyword, where, required=True, default=None, minimum=None, maximum=None):
    """One numeric value (float), or ``default`` when absent and not required."""
    out = numbers(ds, keyword, where, 1, required, True, minimum, maximum)
    return default if out is None else out[0]


def integer(ds, keyword, where, required=True, default=None, minimum=None, maximum=None):
    """One integer value, or ``default`` when absent and not required."""
    x = number(ds, keyword, where, required, None, minimum, maximum)
    if x is None:
        return default
    if x != int(x):
        raise InputError(f"{where}: {keyword} = {x:g} invalid: must be an integer")
    return int(x)


def sequence(ds, keyword, where, required=True, minimum=1):
    """The items of a sequence attribute; at least ``minimum`` when ``required``, else possibly none."""
    v = value(ds, keyword, where, required and minimum > 0, None)
    if v is None:
        return []
    if not isinstance(v, Sequence):
        raise InputError(f"{where}: {keyword} is not a sequence")
    if required and len(v) < minimum:
        raise InputError(f"{where}: {keyword} has {len(v)} items; at least {minimum} needed")
    return list(v)


def date_time(ds, date_keyword, time_keyword, where, required=True):
    """A DA + TM attribute pair as a ``datetime.datetime`` (time optional, midnight if absent)."""
    d = text(ds, date_keyword, where, required, None)
    if d is None:
        return None
    t = text(ds, time_keyword, where, False, "") or "000000"
    try:
        day = datetime.datetime.strptime(d.replace("-", "").replace(".", ""), "%Y%m%d")
        t = t.replace(":", "")
        hh, mm = int(t[0:2]), int(t[2:4] or 0)
        secs = float(t[4:] or 0)
        if not (0 <= hh < 24 and 0 <= mm < 60 and 0 <= secs < 61):
            raise ValueError(t)
        return day + datetime.timedelta(hours=hh, minutes=mm, seconds=secs)
    except (ValueError, IndexError):
        raise InputError(f"{where}: {date_keyword}/{time_keyword} = {d!r} {t!r} is not a valid date and time "
                         "(YYYYMMDD, HHMMSS.FFFFFF)") from None


def parse_datetime(text, what="date"):
    """A ``datetime.datetime`` from an ISO 8601 date or date-time text (e.g. 2026-03-01T09:30), None if blank."""
    if not text or not str(text).strip():
        return None
    try:
        return datetime.datetime.fromisoformat(str(text).strip())
    except ValueError:
        raise InputError(f"{what} {text!r} invalid: use ISO 8601, e.g. 2026-03-01 or 2026-03-01T09:30") from None


def dicom_date_time(moment):
    """(DA, TM) strings of a ``datetime.datetime``."""
    return moment.strftime("%Y%m%d"), moment.strftime("%H%M%S.%f")
