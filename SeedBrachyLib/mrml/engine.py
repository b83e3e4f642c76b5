"""The compiled dose engine inside Slicer: numba installed on demand, when the user asks for dose.

Never at import time (the design notes' rule for optional packages). Declined or failed, the numpy engine
runs (:func:`SeedBrachyLib.kernel.describe` says which).
"""

from __future__ import annotations

import importlib
import logging

import slicer

from .. import kernel

#: Asked where Slicer has no ``slicer.packaging`` (before 5.11).
INSTALL_QUESTION = "Install numba for a faster dose engine?"


def numba_requirement(requirements_path):
    """The numba line(s) of the module's ``requirements_path`` (e.g. ``['numba>=0.58']``)."""
    with open(requirements_path) as requirements:
        return [line.strip() for line in requirements if line.strip().startswith("numba")]


def ensure_dose_engine(requirements_path):
    """Offer to install numba (listed in ``requirements_path``) if it cannot be imported; returns the engine
    that will run (:func:`SeedBrachyLib.kernel.describe`). Declined, failed or offline: the numpy engine."""
    if kernel.numba_kernels() is None:
        numba = numba_requirement(requirements_path)
        try:
            try:  # Slicer 5.11+: asks, installs, offers a restart if needed (Base/Python/slicer/packaging.py);
                # not ``import slicer.packaging``, which would make ``slicer`` a local name unbound on failure
                packaging = importlib.import_module("slicer.packaging")
            except ImportError:
                if slicer.util.confirmOkCancelDisplay(INSTALL_QUESTION):
                    slicer.util.pip_install(numba)
            else:
                packaging.pip_ensure(numba, requester="SeedBrachy")
        except Exception as error:  # declined or no network: the numpy engine runs
            logging.info("SeedBrachy: numba not installed (%s); the numpy dose engine runs", error)
        kernel.retry_import()
    return kernel.describe()
