"""Progress displays: a bar on a terminal, plain lines elsewhere; never past 100 %, never at 100 % before the end."""

from __future__ import annotations

import io
import re

import pytest

from SeedBrachyLib.errors import Cancelled
from SeedBrachyLib.progress import (
    SHOWN_MAX,
    DialogProgress,
    LineProgress,
    TextProgressBar,
    TqdmProgress,
    close,
    console_progress,
    report,
)

#: what a multi-stage operation may send: each stage 0..1, a value above 1, NaN, then a late stage
SEQUENCE = [0.0, 0.3, 1.0, 0.1, 0.6, 1.0, 1.3, float("nan"), 0.95, 1.0]


class _Clock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


def _percentages(text):
    return [float(x) for x in re.findall(r"(\d+(?:\.\d+)?)%", text)]


class _Tty(io.StringIO):
    def isatty(self):
        return True


def test_line_progress_is_plain_monotonic_and_reaches_100_only_when_closed():
    out, clock = io.StringIO(), _Clock()
    p = LineProgress(out, interval_s=5.0, step=0.25, clock=clock)
    for f in SEQUENCE:
        clock.t += 1.0
        p(f, "stage")
    before = _percentages(out.getvalue())
    assert "\r" not in out.getvalue()
    assert before == sorted(before) and max(before) <= 100 * SHOWN_MAX
    p.close()
    p.close()  # once only
    lines = out.getvalue().splitlines()
    assert lines[-1] == "100% done" and sum(line.startswith("100%") for line in lines) == 1


def test_line_progress_prints_periodically_not_on_every_call():
    out, clock = io.StringIO(), _Clock()
    p = LineProgress(out, interval_s=10.0, step=0.5, clock=clock)
    for i in range(1000):
        clock.t = i * 0.01  # 10 s of work in 1000 small steps to 40 %
        p(0.4 * i / 1000, "dose")
    assert 1 <= len(out.getvalue().splitlines()) <= 2  # the first line, then at most one after 10 s
    clock.t = 25.0
    p(0.41, "dose")
    assert len(out.getvalue().splitlines()) >= 2


@pytest.mark.parametrize("kind", ["text", "tqdm"])
def test_terminal_bars_never_show_100_before_close(kind):
    if kind == "tqdm":
        pytest.importorskip("tqdm")
    out = _Tty()
    p = TextProgressBar(out) if kind == "text" else TqdmProgress(out)
    for f in SEQUENCE:
        assert p(f, "optimiser") is not False
    shown = _percentages(out.getvalue())
    assert shown and max(shown) < 100.0
    p.close()
    assert _percentages(out.getvalue())[-1] == 100.0


def test_console_progress_fits_the_stream():
    pytest.importorskip("tqdm")
    assert console_progress(quiet=True) is None
    assert isinstance(console_progress(io.StringIO()), LineProgress)
    bar = console_progress(_Tty())
    assert isinstance(bar, TqdmProgress)
    close(bar)
    close(None)


def test_a_false_return_cancels():
    with pytest.raises(Cancelled, match="40%"):
        report(lambda f, m: False, 0.4, "dose")


def test_a_progress_dialog_gets_monotonic_values_below_its_maximum_and_cancel_stops_the_work():
    """As the module's QProgressDialog (0..100): values never go back, stay below 100 (the dialog resets at its
    maximum) and NaN is ignored; the label follows the message; Cancel makes report() raise Cancelled."""

    class Dialog:  # the QProgressDialog API DialogProgress uses
        def __init__(self):
            self.values, self.labels, self.wasCanceled = [], [], False

        def setValue(self, value):
            self.values.append(value)

        def setLabelText(self, text):
            self.labels.append(text)

    dialog, events = Dialog(), []
    callback = DialogProgress(dialog, lambda: events.append(1))
    for fraction in (0.1, 0.5, 0.3, float("nan"), 1.0, 2.0):
        report(callback, fraction, "dose" if fraction == 0.5 else "")
    assert dialog.values == [10, 50, 50, 50, 99, 99] and dialog.labels == ["dose"] and len(events) == 6
    dialog.wasCanceled = True
    with pytest.raises(Cancelled):
        report(callback, 0.7, "registration")
