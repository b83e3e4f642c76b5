"""Progress reporting for long operations.

A progress callback is any callable ``callback(fraction, message)`` with
``fraction`` in [0, 1]; returning ``False`` asks the operation to stop, which
then raises :class:`SeedBrachyLib.errors.Cancelled`. The Slicer module wires it
to a progress dialog; the command line prints a text progress bar.
"""

import sys

from .errors import Cancelled


def report(callback, fraction, message=""):
    """Send progress to ``callback`` (may be None); raise Cancelled if it returns False."""
    if callback is not None and callback(float(fraction), message) is False:
        raise Cancelled(f"cancelled at {100 * fraction:.0f}%: {message}")


class TextProgressBar:
    """A progress callback that draws a bar on a terminal stream (stderr by default)."""

    def __init__(self, stream=None, width=30):
        self.stream = stream or sys.stderr
        self.width = width

    def __call__(self, fraction, message=""):
        filled = int(round(self.width * min(max(fraction, 0.0), 1.0)))
        bar = "#" * filled + "-" * (self.width - filled)
        end = "\n" if fraction >= 1.0 else ""
        self.stream.write(f"\r[{bar}] {100 * fraction:5.1f}% {message[:40]:<40}{end}")
        self.stream.flush()
        return True
