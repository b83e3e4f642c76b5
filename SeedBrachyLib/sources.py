"""Seed source models: TG-43 datasets, their validation, and strength units.

Each model is a JSON file (schema below) shipped in ``SeedBrachyLib/data/sources``
or added by the user to the user model folder (``$SEEDBRACHY_SOURCE_DIR``, default
``~/.seedbrachy/sources``). Files are validated when loaded; the first bad field is
named in the error.

Required fields (TG-43 tables in cm, converted to mm once here):

* ``model`` (str), ``radionuclide`` (str), ``source`` (citation, str)
* ``dose_rate_constant_cGy_per_h_per_U`` (Lambda, > 0)
* ``active_length_cm`` (L, > 0), ``half_life_days`` (> 0)
* ``radial_dose_function``: ``r_cm`` (strictly increasing, > 0), ``gL`` (> 0, same length)
* ``anisotropy_function``: ``r_cm`` (strictly increasing, > 0), ``theta_deg``
  (strictly increasing within [0, 90]), ``F[i][j] = F(r_cm[j], theta_deg[i])`` (> 0)

Optional: ``Sk_per_mCi`` (> 0, informative only: the conversion in use is the
caller's, default :data:`DEFAULT_U_PER_MCI`), ``anisotropy_factor_1d`` (``r_cm``,
``phi_an``, for the 1D formalism), ``physical_seed`` (``outer_length_cm``,
``outer_diameter_cm``: the capsule; defaults 0.45 cm and 0.08 cm, the I-125 seeds'
common size).

Consistency rules (TG-43U1 definitions; each refusal names the field and the allowed values):

* g_L(r0 = 1 cm) = 1 and F(r, 90 deg) = 1 at every tabulated r, within
  :data:`NORMALISATION_TOLERANCE` (0.0005: 1.000 to the tables' three decimals); F needs
  its 0 and 90 degree rows.
* Radial coverage: g_L tabulated over at least [0.5, 5] cm, F (and phi_an) over at least
  [1, 5] cm (:data:`MIN_RADIAL_RANGE_CM`). Outside the tabulated range the
  extrapolation rules of :mod:`SeedBrachyLib.tg43` apply; a table covering less is
  refused rather than extrapolated over centimetres.
* The active length is shorter than the capsule's outer length (the active core lies
  inside the capsule; on the axis the line-source geometry function is infinite at the
  end of the active length).

Strength units: air-kerma strength S_K in U (1 U = 1 uGy m^2 h^-1 = 1 cGy cm^2 h^-1).
Apparent activity in mCi exists only at the user boundary: S_K [U] = A [mCi] x f,
with f = 1.270 U/mCi by convention for I-125 (TG-43, Nath et al. 1995), settable.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import InputError

#: Conventional I-125 apparent-activity conversion, U per mCi (TG-43, Nath et al. 1995).
DEFAULT_U_PER_MCI = 1.270
#: Outer capsule length (mm) assumed when a model file does not give one (I-125 seeds: 4.5 mm).
DEFAULT_OUTER_LENGTH_MM = 4.5
#: Outer capsule diameter (mm) assumed when a model file does not give one (I-125 seeds: 0.8 mm).
DEFAULT_OUTER_DIAMETER_MM = 0.8
#: Allowed deviation of g_L(1 cm) and F(r, 90 deg) from 1 (the tables' last decimal, +/- 0.0005).
NORMALISATION_TOLERANCE = 5e-4
#: Minimum radial coverage (cm) of each table: (largest allowed first radius, smallest allowed last radius).
MIN_RADIAL_RANGE_CM = {"radial_dose_function": (0.5, 5.0), "anisotropy_function": (1.0, 5.0),
                       "anisotropy_factor_1d": (1.0, 5.0)}

PACKAGED_DIR = Path(__file__).resolve().parent / "data" / "sources"


def user_source_dir():
    """Folder for user-added model files: ``$SEEDBRACHY_SOURCE_DIR`` or ``~/.seedbrachy/sources``.

    InputError if that path exists and is not a folder (its models would otherwise be left out unsaid).
    """
    env = os.environ.get("SEEDBRACHY_SOURCE_DIR")
    folder = Path(env) if env else Path.home() / ".seedbrachy" / "sources"
    if folder.exists() and not folder.is_dir():
        raise InputError(f"user model folder {str(folder)!r} (SEEDBRACHY_SOURCE_DIR, default ~/.seedbrachy/sources) "
                         "is a file: it must be a folder (or not exist yet)")
    return folder


def mci_to_u(activity_mci, u_per_mci=DEFAULT_U_PER_MCI):
    """Apparent activity (mCi) to air-kerma strength S_K (U) with factor ``u_per_mci`` (U/mCi)."""
    _check_positive("u_per_mci", u_per_mci)
    return np.asarray(activity_mci, dtype=float) * u_per_mci


def u_to_mci(strength_u, u_per_mci=DEFAULT_U_PER_MCI):
    """Air-kerma strength S_K (U) to apparent activity (mCi) with factor ``u_per_mci`` (U/mCi)."""
    _check_positive("u_per_mci", u_per_mci)
    return np.asarray(strength_u, dtype=float) / u_per_mci


def _check_positive(name, value):
    if not (isinstance(value, (int, float, np.floating, np.integer)) and math.isfinite(value) and value > 0):
        raise InputError(f"{name} = {_quoted(value)} invalid: must be a finite number > 0")


def _quoted(value, limit=80):
    """``repr(value)``, cut to ``limit`` characters (a message quotes a value, never a whole table)."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


@dataclass(frozen=True)
class SourceModel:
    """A validated TG-43 seed model; lengths in mm, Lambda in cGy h^-1 U^-1."""

    key: str
    name: str
    radionuclide: str
    citation: str
    dose_rate_constant: float
    active_length_mm: float
    half_life_days: float
    gl_r_mm: np.ndarray
    gl: np.ndarray
    f_r_mm: np.ndarray
    f_theta_deg: np.ndarray
    f_table: np.ndarray  # shape (n_theta, n_r)
    outer_length_mm: float = DEFAULT_OUTER_LENGTH_MM
    outer_radius_mm: float = DEFAULT_OUTER_DIAMETER_MM / 2
    phi_r_mm: np.ndarray | None = None
    phi_an: np.ndarray | None = None
    nominal_u_per_mci: float = DEFAULT_U_PER_MCI
    path: str = ""
    extra: dict = field(default_factory=dict, repr=False, compare=False)

    @property
    def mean_life_h(self):
        """Mean life tau = T1/2 / ln 2, in hours."""
        return self.half_life_days * 24.0 / math.log(2.0)

    @property
    def decay_constant_per_h(self):
        """Decay constant lambda = ln 2 / T1/2, in h^-1."""
        return math.log(2.0) / (self.half_life_days * 24.0)

    def summary(self):
        """One line: key, name, Lambda, L, T1/2."""
        return (f"{self.key}: {self.name}; Lambda = {self.dose_rate_constant:.3f} cGy h^-1 U^-1, "
                f"L = {self.active_length_mm / 10:.2f} cm, T1/2 = {self.half_life_days:g} d"
                f"{'' if self.phi_an is not None else ' (no phi_an: 2D only)'}")


# ------------------------------------------------------------------ validation
def _get(data, dotted, where):
    node = data
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            raise InputError(f"{where}: required field '{dotted}' is missing")
        node = node[part]
    return node


def _number(data, dotted, where):
    value = _get(data, dotted, where)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise InputError(f"{where}: field '{dotted}' = {_quoted(value)} invalid: must be a number > 0")
    return float(value)


def _text(data, dotted, where):
    value = _get(data, dotted, where)
    if not isinstance(value, str) or not value.strip():
        raise InputError(f"{where}: field '{dotted}' must be non-empty text")
    return value


def _vector(data, dotted, where, positive=True, increasing=False, length=None):
    raw = _get(data, dotted, where)
    try:
        arr = np.asarray(raw, dtype=float)
    except (TypeError, ValueError):
        raise InputError(f"{where}: field '{dotted}' must be a list of numbers") from None
    if arr.ndim != 1 or arr.size == 0:
        raise InputError(f"{where}: field '{dotted}' must be a non-empty list of numbers")
    if length is not None and arr.size != length:
        raise InputError(f"{where}: field '{dotted}' has {arr.size} values; expected {length}")
    bad = np.flatnonzero(~np.isfinite(arr) | ((arr <= 0) if positive else (arr < 0)))
    if bad.size:
        i = bad[0]
        need = "> 0" if positive else ">= 0"
        raise InputError(f"{where}: {dotted}[{i}] = {arr[i]:g} invalid: must be {need}")
    if increasing:
        bad = np.flatnonzero(np.diff(arr) <= 0)
        if bad.size:
            i = bad[0] + 1
            raise InputError(f"{where}: {dotted} must increase strictly; "
                             f"{dotted}[{i}] = {arr[i]:g} <= {dotted}[{i - 1}] = {arr[i - 1]:g}")
    return arr


def _check_range(table, r_cm, where):
    first_max, last_min = MIN_RADIAL_RANGE_CM[table]
    if r_cm[0] > first_max or r_cm[-1] < last_min:
        raise InputError(f"{where}: {table}.r_cm covers {r_cm[0]:g}..{r_cm[-1]:g} cm; it must cover at least "
                         f"{first_max:g}..{last_min:g} cm (first radius <= {first_max:g} cm, last >= {last_min:g} cm)")


def _check_normalisation(gl_r, gl, theta, f_r, f_table, where):
    tol = NORMALISATION_TOLERANCE
    g1 = float(np.exp(np.interp(1.0, gl_r, np.log(gl))))  # log-linear, as the kernel interpolates
    if abs(g1 - 1.0) > tol:
        raise InputError(f"{where}: radial_dose_function gives g_L(1 cm) = {g1:.4f}; "
                         f"TG-43 normalises it to 1 (allowed 1 +/- {tol:g})")
    if theta[0] != 0.0 or theta[-1] != 90.0:
        raise InputError(f"{where}: anisotropy_function.theta_deg runs {theta[0]:g}..{theta[-1]:g} deg; "
                         "it must start at 0 and end at 90 deg (rows for the axis and the transverse plane)")
    bad = np.flatnonzero(np.abs(f_table[-1] - 1.0) > tol)
    if bad.size:
        j = bad[0]
        raise InputError(f"{where}: anisotropy_function.F at 90 deg, r = {f_r[j]:g} cm is {f_table[-1, j]:g}; "
                         f"TG-43 normalises F(r, 90 deg) to 1 (allowed 1 +/- {tol:g})")


def model_from_dict(data, key, where="model file"):
    """Validate a model dictionary (schema in the module docstring) and build a SourceModel."""
    if not isinstance(data, dict):
        raise InputError(f"{where}: top level must be a JSON object")
    name = _text(data, "model", where)
    gl_r = _vector(data, "radial_dose_function.r_cm", where, increasing=True)
    gl = _vector(data, "radial_dose_function.gL", where, length=gl_r.size)
    f_r = _vector(data, "anisotropy_function.r_cm", where, increasing=True)
    theta = _vector(data, "anisotropy_function.theta_deg", where, positive=False, increasing=True)
    if theta[-1] > 90.0:
        raise InputError(f"{where}: anisotropy_function.theta_deg must lie within [0, 90] "
                         f"(F is symmetric about 90 deg); found {theta[-1]:g}")
    f_raw = _get(data, "anisotropy_function.F", where)
    try:
        f_table = np.asarray(f_raw, dtype=float)
    except (TypeError, ValueError):
        raise InputError(f"{where}: anisotropy_function.F must be a table of numbers") from None
    if f_table.shape != (theta.size, f_r.size):
        raise InputError(f"{where}: anisotropy_function.F has shape {f_table.shape}; "
                         f"expected (len(theta_deg), len(r_cm)) = {(theta.size, f_r.size)}")
    bad = np.argwhere(~np.isfinite(f_table) | (f_table <= 0))
    if bad.size:
        i, j = bad[0]
        raise InputError(f"{where}: anisotropy_function.F[{i}][{j}] = {f_table[i, j]:g} invalid: must be > 0")
    _check_range("radial_dose_function", gl_r, where)
    _check_range("anisotropy_function", f_r, where)
    _check_normalisation(gl_r, gl, theta, f_r, f_table, where)
    phi_r = phi = None
    if "anisotropy_factor_1d" in data:
        phi_r = _vector(data, "anisotropy_factor_1d.r_cm", where, increasing=True)
        _check_range("anisotropy_factor_1d", phi_r, where)
        phi_r = phi_r * 10.0
        phi = _vector(data, "anisotropy_factor_1d.phi_an", where, length=phi_r.size)
    capsule = data.get("physical_seed", {})
    outer = DEFAULT_OUTER_LENGTH_MM
    if "outer_length_cm" in capsule:
        outer = _number(data, "physical_seed.outer_length_cm", where) * 10.0
    diameter = DEFAULT_OUTER_DIAMETER_MM
    if "outer_diameter_cm" in capsule:
        diameter = _number(data, "physical_seed.outer_diameter_cm", where) * 10.0
    active = _number(data, "active_length_cm", where) * 10.0
    if active >= outer:
        raise InputError(f"{where}: active_length_cm = {active / 10:g} must be shorter than the capsule's "
                         f"outer length physical_seed.outer_length_cm = {outer / 10:g} cm")
    nominal = _number(data, "Sk_per_mCi", where) if "Sk_per_mCi" in data else DEFAULT_U_PER_MCI
    return SourceModel(
        key=key, name=name,
        radionuclide=_text(data, "radionuclide", where),
        citation=_text(data, "source", where),
        dose_rate_constant=_number(data, "dose_rate_constant_cGy_per_h_per_U", where),
        active_length_mm=active,
        half_life_days=_number(data, "half_life_days", where),
        gl_r_mm=gl_r * 10.0, gl=gl, f_r_mm=f_r * 10.0, f_theta_deg=theta, f_table=f_table,
        outer_length_mm=outer, outer_radius_mm=diameter / 2, phi_r_mm=phi_r, phi_an=phi, nominal_u_per_mci=nominal,
        path=str(where), extra={k: v for k, v in data.items() if k in ("reference_points", "verification_level")},
    )


def load_model_file(path):
    """Load and validate one model JSON file; the key is the file name without ``.json``."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"seed model file {str(path)!r} does not exist")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"seed model file {path}: not valid JSON ({str(exc)[:200]})") from None
    except RecursionError:
        raise InputError(f"seed model file {path}: nested too deeply to be a seed model (a model file is a flat "
                         "JSON object of tables)") from None
    return model_from_dict(data, path.stem, where=str(path))


def _model_files():
    files = {}
    for folder in (PACKAGED_DIR, user_source_dir()):
        if folder.is_dir():
            for p in sorted(folder.glob("*.json")):
                files.setdefault(p.stem, p)  # packaged models cannot be shadowed
    return files


def available_models():
    """Keys of all models (packaged first, then user-added), sorted."""
    return sorted(_model_files())


def _normal(text):
    return re.sub(r"[\s_\-.]+", "", str(text)).lower()


def model_aliases(key, name):
    """Aliases of a model (normalised: lower case, no spaces, '_', '-' or '.'): its key, the key without the
    radionuclide prefix, its name up to the first '(' and each word of the name with a digit in it (the model
    number), e.g. "I125_OncoSeed6711" / "OncoSeed 6711 (...)" -> i125oncoseed6711, oncoseed6711, 6711."""
    head = str(name).split("(", 1)[0]
    words = [w for w in head.split() if any(c.isdigit() for c in w)]
    return {_normal(key), _normal(str(key).split("_", 1)[-1]), _normal(head), *(_normal(w) for w in words)}


def get_model(name):
    """Return the model whose key is ``name``, or whose alias (:func:`model_aliases`) is uniquely ``name``.

    Names are never matched by a part (substring). Raises InputError naming the available models
    when none or several match.
    """
    if isinstance(name, SourceModel):
        return name
    return load_model_file(_model_files()[model_key(name)])


def model_key(name):
    """The key of the model whose key is ``name`` or whose alias (:func:`model_aliases`) is uniquely ``name``.

    InputError naming the available models when none or several match (the model file is not loaded).
    """
    files = _model_files()
    if name in files:
        return name
    wanted = _normal(name)
    hits = [k for k, path in files.items() if wanted and wanted in model_aliases(k, _model_name(path))]
    if len(hits) == 1:
        return hits[0]
    what = f"matches several models ({', '.join(sorted(hits))})" if hits else "is not a known seed model"
    raise InputError(f"seed model {str(name)[:80]!r} {what}; give a key or a unique alias (model name or number), "
                     f"never a part of one; available: {', '.join(sorted(files))}")


def _model_name(path):
    try:
        return json.loads(Path(path).read_text(encoding="utf-8")).get("model", "")
    except (OSError, ValueError, AttributeError):
        return ""


def add_user_model(path, overwrite=False):
    """Validate a model file and copy it into the user model folder; returns the model.

    Never replaces a packaged model; replaces a user model only with ``overwrite=True``.
    """
    model = load_model_file(path)
    if (PACKAGED_DIR / f"{model.key}.json").exists():
        raise InputError(f"model key {model.key!r} is a packaged model; rename the file")
    target = user_source_dir() / f"{model.key}.json"
    if target.exists() and target.samefile(path):
        raise InputError(f"{str(path)!r} is the user model {model.key!r} itself (in {str(target.parent)!r}): it is "
                         "added already; to change it, edit a copy elsewhere and add that with --force")
    if target.exists() and not overwrite:
        raise InputError(f"user model {str(target)!r} exists; pass overwrite=True (--force) to replace it")
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(path, target)
    return model
