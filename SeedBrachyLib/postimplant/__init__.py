"""Post-implant verification: synthetic post-implant CT, seed detection, registration, post-plan dosimetry.

Research use only: not for clinical decisions.
"""
