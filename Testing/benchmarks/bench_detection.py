"""Benchmark: seed detection on the independent phantoms (Testing/ct_phantoms), per condition, against a
plain 2000 HU threshold (connected components, one seed per centroid), and the time for a 512 x 512 x 200
series (printed figures, not a test): wall and CPU seconds of the detector, its numpy path and the baseline in
the same run, per stage of the detector (``--timing-only``: the time alone; ``--no-timing``: without it;
``--confidence-only``: the confidence's reliability alone).

Sets: SCORING (default; never used to choose a parameter) or TUNING (``--tuning``). ``--calibrate`` fits, on
the TUNING set and its extra series only, the fraction of detections that are true seeds as a logistic function
of the score features (:mod:`SeedBrachyLib.postimplant.detection_confidence`) and writes the coefficients to
``detection_confidence_fit.py``. Each run prints the reliability of the confidence on its set (fraction true per
confidence bin, Brier score against a constant, AUC, false and true detections under review thresholds).
Matching: Hungarian assignment within 2.5 mm.
Rows "detector" (defaults, slice thickness as in the header when the series has one), "+ count" (given the
true number of seeds), "baseline" (2000 HU). Conditions "seed: ..." are per-seed groupings (sensitivity only).
"""

import argparse
import dataclasses
import os
import pprint
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from ct_phantoms import cases, scoring  # noqa: E402

from SeedBrachyLib.cohort.roc import auc_delong  # noqa: E402
from SeedBrachyLib.postimplant import detection, detection_confidence  # noqa: E402

PENALTY = 1.0  # L2 penalty of the confidence's logistic fit (one detection's log-likelihood per unit coefficient)
FIT_FILE = Path(detection_confidence.__file__).with_name("detection_confidence_fit.py")


def score(set_name, case_list):
    tallies = {key: scoring.Tally() for key in ("detector", "+ count", "baseline")}
    seconds = {key: 0.0 for key in tallies}
    confidences, true = [], []
    for case in case_list:
        t0 = time.perf_counter()
        ph = cases.build(case)
        grid = scoring.grid_of(ph.series)
        build = time.perf_counter() - t0
        t0 = time.perf_counter()
        free = detection.detect_seeds(ph.ct, grid, slice_thickness_mm=ph.slice_thickness_mm)
        t1 = time.perf_counter()
        counted = detection.detect_seeds(ph.ct, grid, slice_thickness_mm=ph.slice_thickness_mm,
                                         expected_count=len(ph.seeds))
        t2 = time.perf_counter()
        base = scoring.threshold_baseline(ph.ct, ph.series)
        t3 = time.perf_counter()
        for key, result, dt in (("detector", free, t1 - t0), ("+ count", counted, t2 - t1)):
            tallies[key].add(ph, [s.position for s in result.seeds], [s.axis for s in result.seeds])
            seconds[key] += dt
        tallies["baseline"].add(ph, base)
        seconds["baseline"] += t3 - t2
        pairs, _ = scoring.match([s.position for s in free.seeds], [s.position for s in ph.seeds])
        hit = {f for f, _t in pairs}
        confidences += list(free.confidences)
        true += [i in hit for i in range(len(free.seeds))]
        print(f"{case.name:<28} {ph.ct.shape} build {build:5.1f} s, detect {t1 - t0:5.1f} s: {len(ph.seeds)} seeds, "
              f"{len(free.seeds)} found, {len(pairs)} true; + count: {counted.summary().split(',')[0]}", flush=True)
    for key, tally in tallies.items():
        print()
        print(tally.table(f"{key} on {set_name} ({len(case_list)} series, {seconds[key]:.1f} s in all)"))
    reliability(set_name, np.array(confidences), np.array(true, bool))


def _auc(values, true):
    """Mann-Whitney AUC (:func:`SeedBrachyLib.cohort.roc.auc_delong`), NaN without both true and false."""
    return auc_delong(values, true)["auc"] if 0 < np.sum(true) < len(true) else float("nan")


def reliability(set_name, confidence, true):
    """Fraction of true seeds per bin of the confidence, the Brier score against a constant, the AUC, and per
    threshold the false detections and true seeds listed "to review"."""
    print(f"\nreliability of the detector's confidence on {set_name}: bin, detections, mean confidence, fraction true")
    edges = (0.0, 0.2, 0.4, 0.6, 0.8, 0.9, 0.95, 1.0)
    for lo, hi in zip(edges[:-1], edges[1:]):
        sel = (confidence >= lo) & ((confidence < hi) | (hi == 1.0))
        if sel.any():
            close = "]" if hi == 1.0 else ")"
            print(f"  [{lo:.2f}, {hi:.2f}{close}  n={sel.sum():4d}  mean {confidence[sel].mean():.3f}  "
                  f"true {true[sel].mean():.3f}")
    print(f"  Brier score {np.mean((confidence - true) ** 2):.4f} (all at the overall fraction true "
          f"{true.mean():.3f}: {np.mean((true.mean() - true) ** 2):.4f}); AUC "
          f"{_auc(confidence, true):.3f}")
    for threshold in sorted({0.3, 0.5, detection.REVIEW_BELOW, 0.7, 0.8}):
        below = confidence < threshold
        print(f"  to review under {threshold:.2f}: {int((below & ~true).sum())} of {int((~true).sum())} false, "
              f"{int((below & true).sum())} of {int(true.sum())} true")


# TUNING-side series for the confidence's fit only: TUNING's first eight configurations with new random seeds
# (301-308), its thick, oblique and noisy ones again (321-325), where false detections are, and two series
# interpolated from thicker slices (331-332; TUNING has none); none of SCORING's seeds or configurations
_AGAIN = (1, 3, 4, 6, 7)  # indices into TUNING: 3 mm, 5 mm, 5 at 2.5 mm, oblique, anisotropic 2.5 mm 30 HU
CALIBRATION_EXTRA = [dataclasses.replace(case, name=f"C{n + 1} {case.name.split(' ', 1)[1]}", random_seed=301 + n)
                     for n, case in enumerate(cases.TUNING[:8])] + \
    [dataclasses.replace(cases.TUNING[t], name=f"C{9 + n} {cases.TUNING[t].name.split(' ', 1)[1]}",
                         random_seed=321 + n) for n, t in enumerate(_AGAIN)] + [
    cases.Case("C14 thorax 1.5 interp from 3", "thorax", 331, thickness=1.5, increment=1.5, interpolated_from=3.0,
               groups=cases.TUNING[2].groups),
    cases.Case("C15 pelvis 1.25 interp from 4", "pelvis", 332, thickness=1.25, increment=1.25, interpolated_from=4.0,
               length=70.0)]


def labelled(case):
    """(detection result, whether each detection is true) of one case, the detector's defaults."""
    ph = cases.build(case)
    result = detection.detect_seeds(ph.ct, scoring.grid_of(ph.series), slice_thickness_mm=ph.slice_thickness_mm)
    pairs, _ = scoring.match([s.position for s in result.seeds], [s.position for s in ph.seeds])
    hit = {f for f, _t in pairs}
    return result, np.array([i in hit for i in range(len(result.seeds))], bool)


def calibrate():
    """Fit the confidence on the TUNING set and CALIBRATION_EXTRA (logistic regression on the score features,
    :func:`detection_confidence.fit`) and write it to ``detection_confidence_fit.py``."""
    rows, true = [], []
    for case in cases.TUNING + CALIBRATION_EXTRA:
        result, hit = labelled(case)
        rows.append(result.features)
        true.append(hit)
        print(f"{case.name:<28} {len(hit)} detections, {int(hit.sum())} true", flush=True)
    rows, true = np.vstack(rows), np.concatenate(true)
    fit = detection_confidence.fit(rows, true, PENALTY)
    print(f"TUNING + extra: {len(true)} detections, {int((~true).sum())} false; feature, coefficient (per SD), "
          "AUC of the feature alone:")
    for name, b, column in zip(fit["features"], fit["coefficients"], rows.T):
        alone = _auc(column, true)
        print(f"  {name:<10} {b:+7.3f}  {max(alone, 1 - alone):.3f}")
    stored = {key: [float(f"{x:.6g}") for x in value] if key in ("mean", "scale", "coefficients") else value
              for key, value in fit.items()}
    stored["intercept"] = float(f"{fit['intercept']:.6g}")
    FIT_FILE.write_text('"""Coefficients of the detection confidence (data), written by\n'
                        "``python Testing/benchmarks/bench_detection.py --calibrate``: a logistic fit on "
                        f"{len(true)}\ndetections ({int((~true).sum())} false) of the TUNING phantoms and their extra "
                        'series (CALIBRATION_EXTRA);\nsee :mod:`.detection_confidence`."""\n\nCALIBRATION = '
                        f"{pprint.pformat(stored, width=100, sort_dicts=False, compact=True)}\n")
    print(f"written to {FIT_FILE}")
    confidence = detection_confidence.confidence(rows, stored)
    reliability("TUNING + extra (fitted on)", confidence, true)


def confidence_only(case_list):
    """The confidence's reliability on a set (SCORING by default), the detector's defaults, nothing else."""
    confidence, true = [], []
    for case in case_list:
        result, hit = labelled(case)
        confidence.append(result.confidences)
        true.append(hit)
        print(f"{case.name:<28} {len(hit)} detections, {int(hit.sum())} true, "
              f"{int(result.review.sum())} to review ({int((result.review & ~hit).sum())} of them false)", flush=True)
    reliability("SCORING" if case_list is cases.SCORING else "TUNING", np.concatenate(confidence), np.concatenate(true))


def _timed(call):
    """(result, wall s, CPU s, [(stage, wall s, CPU s)]) of ``call(progress)``; stages from the progress messages."""
    marks = []

    def progress(_fraction, message):
        if not marks or marks[-1][0] != message:
            marks.append((message, time.perf_counter(), time.process_time()))

    t0, c0 = time.perf_counter(), time.process_time()
    marks.append(("input checks", t0, c0))
    result = call(progress)
    t1, c1 = time.perf_counter(), time.process_time()
    ends = marks[1:] + [("", t1, c1)]
    stages = [(m[0].removeprefix("seed detection: "), e[1] - m[1], e[2] - m[2]) for m, e in zip(marks, ends)][:-1]
    return result, t1 - t0, c1 - c0, stages


def timing():
    """A 512 x 512 x 200 pelvis series (0.78 mm pixels, 1.25 mm slices): the detector (compiled, and its numpy
    path, ``SEEDBRACHY_ENGINE=numpy``) against the 2000 HU baseline, wall and CPU seconds, in one run."""
    case = cases.Case("timing 512x512x200", "pelvis", 9001, pixel=(0.78, 0.78), thickness=1.25, increment=1.25,
                      fov=(400.0, 400.0), length=250.0, needle_seeds=60)
    ph = cases.build(case)
    grid = scoring.grid_of(ph.series)
    truth = [s.position for s in ph.seeds]

    def detect(progress):
        return detection.detect_seeds(ph.ct, grid, slice_thickness_mm=ph.slice_thickness_mm, progress=progress)

    print(f"\n{ph.ct.shape[::-1]} voxels (i, j, k), {len(ph.seeds)} seeds; load average {os.getloadavg()[0]:.1f} "
          f"on {os.cpu_count()} cores (load distorts wall times; CPU times are fairer); target <= 3 s")
    rows = []
    first = _timed(detect)  # the compiled kernels load (or compile, the first time after an install) here
    rows.append(("detector, first call in this process", *first))
    rows.append(("detector (compiled)", *_timed(detect)))
    os.environ["SEEDBRACHY_ENGINE"] = "numpy"
    try:
        rows.append(("detector, numpy path", *_timed(detect)))
    finally:
        del os.environ["SEEDBRACHY_ENGINE"]
    rows.append(("2000 HU baseline", *_timed(lambda _p: scoring.threshold_baseline(ph.ct, ph.series))))
    for name, result, wall, cpu, stages in rows:
        found = result if isinstance(result, np.ndarray) else [s.position for s in result.seeds]
        pairs, _ = scoring.match(found, truth)
        print(f"  {name:<38} {wall:6.2f} s wall {cpu:6.2f} s CPU: {len(found)} found, {len(pairs)} true")
        if stages:
            print("    " + "; ".join(f"{stage} {w:.2f} / {c:.2f} s" for stage, w, c in stages))
    fast, ref = rows[1][1], rows[2][1]
    if len(fast.seeds) == len(ref.seeds):
        moved = max((float(np.linalg.norm(a.position - b.position)) for a, b in zip(fast.seeds, ref.seeds)),
                    default=0.0)
        print(f"  compiled vs numpy path: same {len(fast.seeds)} seeds, positions within {moved:.1e} mm, confidences "
              f"within {float(np.max(np.abs(fast.confidences - ref.confidences), initial=0.0)):.1e}")
    else:
        print(f"  compiled vs numpy path: {len(fast.seeds)} against {len(ref.seeds)} seeds (they should agree)")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tuning", action="store_true", help="score the TUNING set (default: SCORING)")
    parser.add_argument("--no-timing", action="store_true", help="skip the 512 x 512 x 200 timing")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--timing-only", action="store_true", help="only the 512 x 512 x 200 timing")
    mode.add_argument("--confidence-only", action="store_true", help="only the confidence's reliability")
    mode.add_argument("--calibrate", action="store_true",
                      help="fit the confidence on TUNING and its extra series, write detection_confidence_fit.py")
    args = parser.parse_args(argv)
    print(__doc__.splitlines()[0])
    if args.calibrate:
        calibrate()
    elif args.confidence_only:
        confidence_only(cases.TUNING if args.tuning else cases.SCORING)
    elif args.timing_only:
        timing()
    else:
        score(*(("TUNING", cases.TUNING) if args.tuning else ("SCORING", cases.SCORING)))
        if not args.no_timing:
            timing()


if __name__ == "__main__":
    main()
