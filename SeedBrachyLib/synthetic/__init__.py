"""Synthetic data for tests, the demo and the module's self-test: phantoms, synthetic CT, simulated implants.

Production code never imports this package (a test checks it).
"""
