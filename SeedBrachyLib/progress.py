"""Progress reporting for long operations.

A progress callback is any callable ``callback(fraction, message)`` with
``fraction`` in [0, 1]; returning ``False`` asks the operation to stop, which
then raises :class:`SeedBrachyLib.errors.Cancelled`. The Slicer module wires it
to a progress dialog (:class:`DialogProgress`); the command line shows :func:`console_progress` (a bar on a
terminal, plain lines in logs), which reaches 100% only when the work is closed.
"""

import sys

from .errors import Cancelled


def report(callback, fraction, message=""):
    """Send progress to ``callback`` (may be None); raise Cancelled if it returns False."""
    if callback is not None and callback(float(fraction), message) is False:
        raise Cancelled(f"cancelled at {100 * fraction:.0f}%: {message}")


def scaled(callback, start, stop):
    """A callback mapping 0..1 onto ``start``..``stop`` of ``callback`` (None stays None), for a step of a
    longer operation."""
    if callback is None:
        return None
    return lambda fraction, message="": callback(start + (stop - start) * min(max(fraction, 0.0), 1.0), message)


class TextProgressBar:
    """A progress callback that draws a bar on a terminal stream (stderr by default); 100% only on :meth:`close`."""

    def __init__(self, stream=None, width=30):
        self.stream = stream or sys.stderr
        self.width = width
        self.shown = _Shown()

    def __call__(self, fraction, message=""):
        self._draw(self.shown.update(fraction), message, "")
        return True

    def close(self, message="done"):
        if not self.shown.closed:
            self.shown.closed = True
            self._draw(1.0, message, "\n")

    def _draw(self, fraction, message, end):
        filled = int(round(self.width * fraction))
        bar = "#" * filled + "-" * (self.width - filled)
        self.stream.write(f"\r[{bar}] {100 * fraction:5.1f}% {message[:40]:<40}{end}")
        self.stream.flush()


#: Largest fraction shown before the work says it is done: a bar never sits at 100% while work goes on.
SHOWN_MAX = 0.99


class _Shown:
    """The fraction a display shows: clamped to [0, SHOWN_MAX] until :meth:`close`, never going back."""

    def __init__(self):
        self.value = 0.0
        self.closed = False

    def update(self, fraction):
        f = float(fraction)
        if f == f:  # NaN is ignored
            self.value = max(self.value, min(max(f, 0.0), SHOWN_MAX))
        return self.value


class DialogProgress:
    """A progress callback driving a progress dialog, as the Slicer module shows one (Qt's QProgressDialog
    from ``slicer.util.createProgressDialog``, 0..100; used through ``setValue``, ``setLabelText`` and
    ``wasCanceled`` only). ``process_events()`` (e.g. ``slicer.app.processEvents``) keeps the application
    responsive. The value never goes back and stays below 100 (a QProgressDialog resets at its maximum)
    until the work is done; returns False, so that the work stops with Cancelled, once Cancel was pressed."""

    def __init__(self, dialog, process_events=None):
        self.dialog, self.process_events = dialog, process_events
        self.shown = _Shown()

    def __call__(self, fraction, message=""):
        self.dialog.setValue(int(round(100 * self.shown.update(fraction))))
        if message:
            self.dialog.setLabelText(message)
        if self.process_events is not None:
            self.process_events()
        return not self.dialog.wasCanceled


class LineProgress:
    """Plain progress lines (no carriage returns) for logs and files: one line at the start, then one each
    ``step`` (fraction) of advance or ``interval_s`` seconds of work, and "100% done" on :meth:`close`."""

    def __init__(self, stream=None, interval_s=10.0, step=0.1, clock=None):
        import time
        self.stream = stream or sys.stderr
        self.interval_s, self.step = float(interval_s), float(step)
        self.clock = clock or time.monotonic
        self.shown = _Shown()
        self._last_value = self._last_time = None

    def __call__(self, fraction, message=""):
        f = self.shown.update(fraction)
        now = self.clock()
        if (self._last_value is None or f - self._last_value >= self.step - 1e-12
                or (now - self._last_time >= self.interval_s and f > self._last_value)):
            self.stream.write(f"{100 * f:3.0f}% {message}\n")
            self.stream.flush()
            self._last_value, self._last_time = f, now
        return True

    def close(self, message="done"):
        if not self.shown.closed:
            self.shown.closed = True
            self.stream.write(f"100% {message}\n")
            self.stream.flush()


class TqdmProgress:
    """A tqdm bar (permille resolution) as a progress callback; the bar reaches 100% only on :meth:`close`."""

    def __init__(self, stream=None, description="SeedBrachy"):
        from tqdm import tqdm
        self.bar = tqdm(total=1000, file=stream or sys.stderr, desc=description, leave=True, dynamic_ncols=True,
                        bar_format="{desc}: {percentage:3.0f}%|{bar}| {elapsed} {postfix}")
        self.shown = _Shown()

    def __call__(self, fraction, message=""):
        n = int(round(1000 * self.shown.update(fraction)))
        if n > self.bar.n:
            self.bar.update(n - self.bar.n)
        self.bar.set_postfix_str(message[:48], refresh=True)
        return True

    def close(self, message="done"):
        if not self.shown.closed:
            self.shown.closed = True
            self.bar.update(1000 - self.bar.n)
            self.bar.set_postfix_str(message, refresh=True)
            self.bar.close()


def console_progress(stream=None, quiet=False):
    """The progress display that fits where the command runs, or None when ``quiet``.

    On a terminal: a tqdm bar (the plain :class:`TextProgressBar` if tqdm is missing); otherwise (CI logs,
    files, pipes): :class:`LineProgress`. Call ``close()`` on it when the work is done.
    """
    if quiet:
        return None
    stream = stream or sys.stderr
    if not (hasattr(stream, "isatty") and stream.isatty()):
        return LineProgress(stream)
    try:
        return TqdmProgress(stream)
    except ImportError:
        return TextProgressBar(stream)


def close(display, message="done"):
    """Finish a display from :func:`console_progress` (None is fine)."""
    if display is not None and hasattr(display, "close"):
        display.close(message)
