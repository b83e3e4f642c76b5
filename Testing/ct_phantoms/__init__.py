"""Independent post-implant CT phantoms for scoring seed detection (test and benchmark data only).

Written from the imaging physics, without importing the project's synthetic code or its detector:
:mod:`.physics` renders a series (supersampled seed capsule and marker, PSF, slice sensitivity
profile, noise texture, metal streaks, HU clipping), :mod:`.anatomy` the pelvis and thorax with
cortical and cancellous bone, :mod:`.implant` the seeds and their groupings, :mod:`.cases` the
TUNING and SCORING sets (different random seeds and configurations), :mod:`.scoring` the Hungarian
matching within 2.5 mm, the per-condition tallies and the plain 2000 HU threshold baseline.
"""
