"""Mutation testing of the DICOM RT readers: damaged files must give a correct result or a clear InputError.

Each mutant is one of the exported files (CT slice, RT Structure Set, RT Plan, RT Dose of a small synthetic
case) damaged in one way: bit flips, truncation, a deleted attribute (anywhere, in sequences too), an
attribute re-encoded with a wrong VR, an absurd value (huge, negative, zero, NaN, empty, text in a number),
or a huge length field. The reader's outcome is sorted into

* ``same`` -- the result equals the undamaged file's;
* ``changed`` -- a different result that is still valid (finite, in range, consistent shapes): the damage
  hit a value that is legal either way, e.g. a digit of a coordinate;
* ``error`` -- an :class:`~SeedBrachyLib.errors.InputError` (a clear message naming the file);
* ``crash`` -- any other exception; ``hang`` -- over the per-file time limit; ``nonsense`` -- a result
  that breaks the invariants (non-finite values, wrong shapes, fractions outside [0, 1], ...).

Only the last three are failures. ``run(kind, count)`` returns the counts; ``python Testing/fuzz/dicom_mutations.py``
runs the full count (10,000 per kind), Testing/test_dicomrt_fuzz.py a small sample in CI.
"""

from __future__ import annotations

import math
import shutil
import signal
import struct
import tempfile
import time
import traceback
import warnings
from collections import Counter
from pathlib import Path

import numpy as np
import pydicom

from SeedBrachyLib import dicomrt
from SeedBrachyLib.errors import InputError
from SeedBrachyLib.grid import Grid
from SeedBrachyLib.seeds import Seed

KINDS = ("ct", "rtstruct", "rtplan", "rtdose")
MUTATIONS = ("bit_flip", "truncate", "delete", "wrong_vr", "absurd", "huge_length")
VRS = ("AE", "AS", "AT", "CS", "DA", "DS", "DT", "FL", "FD", "IS", "LO", "LT", "OB", "OD", "OF", "OL", "OW", "PN",
       "SH", "SL", "SQ", "SS", "ST", "TM", "UI", "UL", "UN", "US", "UT")
ABSURD = (b"1e308", b"-1e308", b"-1", b"0", b"NaN", b"inf", b"-inf", b"99999999999999999999", b"", b"abc",
          b"1\\2\\3\\4\\5\\6\\7", b"-0", b"\x00\x00", b"\xff\xff\xff\xff", b"1e-300")
LONG_VRS = {b"OB", b"OD", b"OF", b"OL", b"OW", b"SQ", b"UC", b"UN", b"UR", b"UT", b"OV", b"SV", b"UV"}


class Timeout(Exception):
    """The reader took longer than the per-file limit."""


def make_case(folder):
    """A small oblique case written as CT (6 slices of 24 x 20), RT Structure Set, RT Plan and RT Dose."""
    from SeedBrachyLib.dose import compute_dose

    folder = Path(folder)
    direction = np.array([[0.96, -0.28, 0.0], [0.28, 0.96, 0.0], [0.0, 0.0, 1.0]])
    direction[:, 1] = np.cross(direction[:, 2], direction[:, 0])
    grid = Grid([-20.0, -15.0, -7.5], [2.0, 1.75, 3.0], direction, (24, 20, 6))
    points = grid.points()
    r = np.linalg.norm(points - [3.0, 2.0, 0.0], axis=-1)
    ct = np.where(r < 14.0, 40, -1000).astype(np.int16)
    ring = (r < 9.0) & (r > 3.5)
    series = dicomrt.write_ct_series(folder / "CT", ct, grid)
    rois = [dicomrt.Roi("Body", (r < 14.0).astype(np.float32), interpreted_type="EXTERNAL"),
            dicomrt.Roi("Ring", ring.astype(np.float32), interpreted_type="CTV")]
    dicomrt.write_rtstruct(folder / "RS.dcm", rois, grid, series)
    seeds = [Seed([3.0 + x, 2.0, z], [1.0, 0.2, 0.1], 0.6 + 0.01 * n, f"N{n}")
             for n, (x, z) in enumerate([(-5, -3), (0, 0), (5, 3), (0, 4)])]
    plan = dicomrt.write_rtplan(folder / "RP.dcm", seeds, "I125_OncoSeed6711", series.study, 120.0)
    dose_grid = Grid.around([3.0, 2.0, 0.0], [24.0, 20.0, 12.0], [3.0, 2.5, 3.0], direction)
    dicomrt.write_rtdose(folder / "RD.dcm", compute_dose(dose_grid, seeds, "I125_OncoSeed6711"), dose_grid,
                         series.study, plan.SOPInstanceUID)
    return grid


def read_kind(kind, path, grid):
    """Run the reader of ``kind`` on ``path`` (a CT folder for "ct")."""
    if kind == "ct":
        return dicomrt.read_ct_series(path)
    if kind == "rtstruct":
        return dicomrt.read_rtstruct(path, grid)
    if kind == "rtplan":
        return dicomrt.read_rtplan(path)
    return dicomrt.read_rtdose(path)


def _finite(a):
    return bool(np.all(np.isfinite(np.asarray(a, dtype=float))))


def check_result(kind, result, grid):
    """None if ``result`` is valid for ``kind``, else a description of what is wrong."""
    if kind == "ct":
        hu, g, series = result
        if hu.shape != tuple(g.shape) or not _finite(hu) or len(series.sop_instance_uids) != g.dims[2]:
            return "CT array, grid and slice list disagree or values are not finite"
    elif kind == "rtstruct":
        if not result:
            return "no ROI and no error"
        for roi in result:
            f = roi.fraction
            if f.shape != tuple(grid.shape) or not _finite(f) or f.min() < 0 or f.max() > 1 or not f.any():
                return f"ROI {roi.name}: fractions invalid"
    elif kind == "rtplan":
        if not result.seeds:
            return "no seed and no error"
        for s in result.seeds:
            if not (_finite(s.position) and abs(np.linalg.norm(s.axis) - 1) < 1e-6 and math.isfinite(s.strength_u)
                    and s.strength_u > 0):
                return f"seed {s.label} invalid"
    else:
        dose, g, info = result
        if dose.shape != tuple(g.shape) or not _finite(dose) or dose.min() < 0 or not info.scaling > 0:
            return "dose array invalid"
    return None


def same_result(kind, a, b):
    """True if two reader results are equal (to 1e-9)."""
    if kind == "ct":
        return a[0].shape == b[0].shape and np.array_equal(a[0], b[0]) and _same_grid(a[1], b[1])
    if kind == "rtstruct":
        return len(a) == len(b) and all(x.name == y.name and x.fraction.shape == y.fraction.shape
                                        and np.allclose(x.fraction, y.fraction) for x, y in zip(a, b))
    if kind == "rtplan":
        return len(a.seeds) == len(b.seeds) and all(
            np.allclose(x.position, y.position) and np.allclose(x.axis, y.axis) and x.strength_u == y.strength_u
            for x, y in zip(a.seeds, b.seeds))
    return a[0].shape == b[0].shape and np.allclose(a[0], b[0]) and _same_grid(a[1], b[1])


def _same_grid(a, b):
    return a.dims == b.dims and np.allclose(a.origin, b.origin) and np.allclose(a.spacing, b.spacing) and \
        np.allclose(a.direction, b.direction)


# --------------------------------------------------------------------------------------------- mutations
def element_spans(data):
    """(start, value start, end, tag, VR) of every data element after the file meta group, items included.

    Our files are Explicit VR Little Endian with sequences and items of undefined length (as pydicom writes
    them), so an element can be cut out or re-encoded without fixing any enclosing length.
    """
    spans, pos, end = [], 132, len(data)
    while pos + 8 <= end:
        group, elem = struct.unpack_from("<HH", data, pos)
        tag = (group << 16) | elem
        if group == 0xFFFE:  # item, item delimiter, sequence delimiter: 4-byte length, no VR
            length = struct.unpack_from("<I", data, pos + 4)[0]
            pos += 8 if length == 0xFFFFFFFF or elem != 0xE000 else 8 + length
            continue
        vr = bytes(data[pos + 4:pos + 6])
        if vr in LONG_VRS:
            length = struct.unpack_from("<I", data, pos + 8)[0]
            head = 12
        else:
            length = struct.unpack_from("<H", data, pos + 6)[0]
            head = 8
        if vr == b"SQ" and length == 0xFFFFFFFF:
            spans.append((pos, pos + head, None, tag, vr))  # its items follow as elements of their own
            pos += head
            continue
        if group != 0x0002:
            spans.append((pos, pos + head, pos + head + length, tag, vr))
        pos += head + length
    return spans


def _encode(tag, vr, value):
    value = value + b" " * (len(value) % 2)
    head = struct.pack("<HH", tag >> 16, tag & 0xFFFF) + vr
    if vr in LONG_VRS:
        return head + b"\0\0" + struct.pack("<I", len(value)) + value
    return head + struct.pack("<H", min(len(value), 0xFFFF)) + value


def mutate(data, rng, spans=None):
    """(mutated bytes, description) of one random mutation of the file bytes ``data``."""
    kind = MUTATIONS[rng.integers(len(MUTATIONS))]
    if kind == "bit_flip":
        buf = bytearray(data)
        flips = int(rng.integers(1, 9))
        for _ in range(flips):
            pos = int(rng.integers(128, len(buf)))
            buf[pos] ^= 1 << int(rng.integers(8))
        return bytes(buf), f"bit_flip x{flips}"
    if kind == "truncate":
        cut = int(rng.integers(0, len(data)))
        return data[:cut], f"truncate at {cut} of {len(data)}"
    if kind == "huge_length":
        return _huge_length(data, rng)
    spans = spans if spans is not None else element_spans(data)
    start, value_start, end, tag, vr = spans[int(rng.integers(len(spans)))]
    name = pydicom.datadict.keyword_for_tag(tag) or f"{tag:08X}"
    if end is None:  # a sequence: delete or re-encode its header only (its items then float free)
        end = value_start
        value = b""
    else:
        value = bytes(data[value_start:end])
    if kind == "delete":
        return data[:start] + data[end:], f"delete {name}"
    if kind == "wrong_vr":
        new_vr = VRS[int(rng.integers(len(VRS)))].encode()
        return data[:start] + _encode(tag, new_vr, value) + data[end:], f"wrong VR {new_vr.decode()} for {name}"
    absurd = ABSURD[int(rng.integers(len(ABSURD)))]
    return data[:start] + _encode(tag, vr if vr != b"SQ" else b"UN", absurd) + data[end:], \
        f"absurd {absurd[:12]!r} in {name}"


def _huge_length(data, rng):
    """Overwrite the length field of a random element (explicit VR little endian) with a huge value."""
    buf = bytearray(data)
    starts = [m for m in range(132, len(buf) - 8, 2) if buf[m + 4:m + 6].isalpha() and buf[m + 4:m + 6].isupper()]
    if not starts:
        return bytes(buf), "huge_length (no element found)"
    m = starts[int(rng.integers(len(starts)))]
    huge = int(rng.choice([0xFFFF, 0xFFFE, 0xFFFFFFFE, 0xFFFFFFF0, 0x7FFFFFFF, len(buf) * 3]))
    if bytes(buf[m + 4:m + 6]) in LONG_VRS:
        buf[m + 8:m + 12] = struct.pack("<I", huge & 0xFFFFFFFF)
    else:
        buf[m + 6:m + 8] = struct.pack("<H", huge & 0xFFFF)
    return bytes(buf), f"huge_length {huge:#x} at byte {m}"


# --------------------------------------------------------------------------------------------- running
def _alarm(signum, frame):
    raise Timeout()


def run(kind, count, seed=0, time_limit_s=10.0, work=None, log=None):
    """Read ``count`` mutants of ``kind``; return a Counter of outcomes (and failures as (what, detail) in log)."""
    work = Path(work or tempfile.mkdtemp(prefix="seedbrachy-fuzz-"))
    case = work / "case"
    if not case.exists():
        make_case(case)
    grid = dicomrt.read_ct_series(case / "CT")[1]
    if kind == "ct":
        target = sorted((case / "CT").iterdir())[2]
        source = work / f"ct-{seed}"
        shutil.rmtree(source, ignore_errors=True)
        shutil.copytree(case / "CT", source)
        path = source / target.name
    else:
        target = case / {"rtstruct": "RS.dcm", "rtplan": "RP.dcm", "rtdose": "RD.dcm"}[kind]
        path = work / f"mutant-{kind}-{seed}.dcm"
    original = read_kind(kind, case / "CT" if kind == "ct" else target, grid)
    data = target.read_bytes()
    spans = element_spans(data)
    rng = np.random.default_rng([seed, KINDS.index(kind)])
    outcomes = Counter()
    previous = signal.signal(signal.SIGALRM, _alarm)
    try:
        for _ in range(count):
            mutant, what = mutate(data, rng, spans)
            path.write_bytes(mutant)
            signal.setitimer(signal.ITIMER_REAL, time_limit_s)
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    result = read_kind(kind, source if kind == "ct" else path, grid)
                signal.setitimer(signal.ITIMER_REAL, 0)
                problem = check_result(kind, result, grid)
                outcome = "nonsense" if problem else ("same" if same_result(kind, result, original) else "changed")
                detail = problem
            except InputError as exc:
                signal.setitimer(signal.ITIMER_REAL, 0)
                outcome, detail = "error", str(exc)
            except Timeout:
                outcome, detail = "hang", f"over {time_limit_s:g} s"
            except Exception as exc:  # noqa: BLE001 - any other exception is what this test looks for
                signal.setitimer(signal.ITIMER_REAL, 0)
                outcome, detail = "crash", "".join(traceback.format_exception_only(type(exc), exc)).strip()
            outcomes[outcome] += 1
            outcomes[f"{outcome}:{what.split()[0]}"] += 1
            if log is not None and outcome in ("crash", "hang", "nonsense", "changed"):
                log.append((kind, what, detail))
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        if kind == "ct":
            shutil.rmtree(source, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
    return outcomes


def main(argv=None):
    """Command line: ``python Testing/fuzz/dicom_mutations.py [--count N] [--seed S] [--kinds ...]``."""
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=10000, help="mutants per kind (default 10000)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--time-limit", type=float, default=10.0, help="seconds per file (default 10)")
    parser.add_argument("--kinds", nargs="*", default=list(KINDS), choices=KINDS)
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="seedbrachy-fuzz-"))
    failures, failed = [], 0
    for kind in args.kinds:
        start = time.time()
        outcomes = run(kind, args.count, args.seed, args.time_limit, work, failures)
        main_counts = {k: outcomes[k] for k in ("same", "changed", "error", "crash", "hang", "nonsense")}
        per_mutation = {k: v for k, v in sorted(outcomes.items()) if ":" in k}
        print(f"{kind}: {args.count} mutants in {time.time() - start:.0f} s: {main_counts}", flush=True)
        print(f"    by mutation: {per_mutation}", flush=True)
        failed += sum(main_counts[k] for k in ("crash", "hang", "nonsense"))
    for kind, what, detail in [f for f in failures if f[2] is not None][:50]:
        print(f"FAIL {kind}: {what}: {detail}")
    changed = Counter(f"{kind}: {what}" for kind, what, detail in failures if detail is None)
    print(f"accepted changes (valid results that differ), by mutation: {dict(changed.most_common(40))}")
    shutil.rmtree(work, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
