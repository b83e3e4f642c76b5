"""Coefficients of the detection confidence (data), written by
``python Testing/benchmarks/bench_detection.py --calibrate``: a logistic fit on 1048
detections (43 false) of the TUNING phantoms and their extra series (CALIBRATION_EXTRA);
see :mod:`.detection_confidence`."""

CALIBRATION = {'features': ['mass', 'mass_off', 'residual', 'tail', 'peak', 'clutter', 'bone', 'neighbour', 'k',
              'margin', 'thickness', 'score'],
 'mean': [-0.0963409, 0.117794, 3.17154, 2.9266, 0.0306035, 1.94308, 0.0524463, 0.60039, 0.363234,
          0.896607, 0.904862, 0.683507],
 'scale': [0.152243, 0.136324, 0.543369, 0.551225, 0.106088, 0.874265, 0.10361, 0.284825, 0.490257,
           0.252877, 0.551914, 0.209708],
 'intercept': 5.46133,
 'coefficients': [-0.5223, -1.36446, -0.0659694, 0.295192, 0.0390923, 0.316783, -0.975102, 1.12572,
                  -1.51847, 0.206879, -0.394814, 0.689004],
 'penalty': 1.0}
