"""Coefficients of the detection confidence (data), written by
``python Testing/benchmarks/bench_detection.py --calibrate``: a logistic fit on 1196
detections (52 false) of the TUNING phantoms and their extra series (CALIBRATION_EXTRA);
see :mod:`.detection_confidence`."""

CALIBRATION = {'features': ['mass', 'mass_off', 'residual', 'tail', 'peak', 'clutter', 'bone', 'neighbour', 'k',
              'margin', 'thickness', 'score'],
 'mean': [-0.0754289, 0.0945469, 3.00862, 2.87662, 0.000921845, 2.01756, 0.0553358, 0.607121,
          0.414643, 0.867181, 0.988085, 0.704869],
 'scale': [0.150473, 0.139257, 0.54488, 0.606265, 0.0631048, 0.947308, 0.107675, 0.287021, 0.533063,
           0.282355, 0.570178, 0.201568],
 'intercept': 4.96902,
 'coefficients': [1.0388, 0.892956, -0.0848345, 0.180297, -0.025312, 0.0566066, -1.00514, 0.586568,
                  -1.05939, 0.517191, -0.198192, 0.607342],
 'penalty': 1.0}
