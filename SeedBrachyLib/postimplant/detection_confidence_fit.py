"""Coefficients of the detection confidence (data), written by
``python Testing/benchmarks/bench_detection.py --calibrate``: a logistic fit on 1236
detections (96 false) of the TUNING phantoms and their extra series (CALIBRATION_EXTRA);
see :mod:`.detection_confidence`."""

CALIBRATION = {'features': ['mass', 'mass_off', 'residual', 'tail', 'peak', 'clutter', 'bone', 'neighbour', 'k',
              'margin', 'thickness', 'score'],
 'mean': [-0.0721814, 0.0931167, 3.08822, 2.92255, 0.00504186, 1.99829, 0.0583439, 0.591964,
          0.446788, 0.872722, 1.00793, 0.701866],
 'scale': [0.147526, 0.13529, 0.534022, 0.586029, 0.0742084, 0.952874, 0.111411, 0.291091, 0.569599,
           0.279146, 0.570841, 0.208301],
 'intercept': 4.19404,
 'coefficients': [-0.043033, 0.0400755, -0.112244, 0.822963, 0.105934, 0.238547, -0.778962,
                  0.974059, -1.15262, -0.0509588, -0.662695, 0.995098],
 'penalty': 1.0}
