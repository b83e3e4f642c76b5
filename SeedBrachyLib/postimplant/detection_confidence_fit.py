"""Coefficients of the detection confidence (data), written by
``python Testing/benchmarks/bench_detection.py --calibrate``: a logistic fit on 1278
detections (87 false) of the TUNING phantoms and their extra series (CALIBRATION_EXTRA);
see :mod:`.detection_confidence`."""

CALIBRATION = {'features': ['mass', 'mass_off', 'residual', 'tail', 'peak', 'clutter', 'bone', 'neighbour', 'k',
              'margin', 'thickness', 'score'],
 'mean': [-0.065344, 0.0875053, 3.05872, 2.94666, 0.00338069, 1.99846, 0.055936, 0.583353, 0.48265,
          0.860973, 1.02267, 0.707132],
 'scale': [0.143086, 0.130714, 0.521566, 0.589729, 0.0781789, 0.976829, 0.108567, 0.292825,
           0.577741, 0.283316, 0.569983, 0.204274],
 'intercept': 4.61921,
 'coefficients': [-0.149249, -0.550124, 0.0951895, 0.710295, 0.108908, 0.222699, -0.980834, 1.16184,
                  -1.63025, -0.0758608, -0.555622, 0.854322],
 'penalty': 1.0}
