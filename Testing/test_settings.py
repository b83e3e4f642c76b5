"""The one source of settings: validation where values enter, and the command line derived from it."""

import argparse
import math

import pytest

from SeedBrachyLib import settings
from SeedBrachyLib.errors import InputError
from SeedBrachyLib.sources import mci_to_u


def test_every_setting_has_help_a_default_within_its_range_or_choices_and_a_section():
    for name, s in settings.SETTINGS.items():
        assert s.help and s.section and s.kind in (int, float, str, bool), name
        assert s.validate(s.default) == s.default, name
        allowed = s.allowed()
        assert (allowed is None) != (s.minimum is None), f"{name}: a range or choices, not both or neither"
        assert s.option == "--" + "".join("-" + c.lower() if c.isupper() else c for c in name), name


@pytest.mark.parametrize("name,value,message", [
    ("seedActivityMci", 0.0, "seedActivityMci = 0.0 mCi invalid: allowed is 0.05 to 5 mCi"),
    ("seedActivityMci", math.nan, "allowed is 0.05 to 5 mCi"),
    ("prescriptionGy", math.inf, "allowed is 1 to 300 Gy"),
    ("prescriptionGy", "abc", "prescriptionGy = 'abc' invalid: must be a number (Gy)"),
    ("prescriptionGy", True, "must be a number"),
    ("randomSeed", 1.5, "must be a whole number"),
    ("holeSpacingMm", 0.0, "holeSpacingMm = 0.0 mm invalid: allowed is 3 to 30 mm"),
    ("sourceModel", "6712", "sourceModel = '6712' invalid: seed model '6712' is not a known seed model; .* "
                            "available: I125_"),
    ("sourceModel", "OncoSeed", "sourceModel = 'OncoSeed' invalid: .* never a part of one"),
    ("planningMethod", "random", "allowed are optimise, uniform, peripheral, modified_peripheral"),
    ("needleEntry", "up", "allowed are right, left, anterior, posterior"),
])
def test_bad_values_are_refused_naming_the_setting_the_value_and_what_is_allowed(name, value, message):
    with pytest.raises(InputError, match=message.replace("(", r"\(").replace(")", r"\)")):
        settings.resolve(**{name: value})


def test_resolve_converts_keeps_defaults_and_refuses_unknown_names():
    values = settings.resolve(prescriptionGy="110", randomSeed="7")
    assert values.prescriptionGy == 110.0 and values.randomSeed == 7 and values.ctvMarginMm == 5.0
    assert settings.resolve(values, ctvMarginMm=3.0).prescriptionGy == 110.0
    with pytest.raises(InputError, match="unknown setting 'rx'"):
        settings.resolve(rx=100.0)
    with pytest.raises(AttributeError, match="read-only"):
        values.prescriptionGy = 1.0
    assert values.strength_u == pytest.approx(float(mci_to_u(0.5)))
    assert values.needle_direction == (-1.0, 0.0, 0.0)


def test_command_line_options_come_from_the_settings():
    parser = argparse.ArgumentParser()
    settings.add_arguments(parser, ["seedActivityMci", "sourceModel", "prescriptionGy"])
    defaults = settings.from_arguments(parser.parse_args([]))
    assert defaults == settings.defaults()
    changed = settings.from_arguments(parser.parse_args(["--seed-activity-mci", "0.7", "--prescription-gy", "90"]))
    assert (changed.seedActivityMci, changed.prescriptionGy) == (0.7, 90.0)
    aliases = [settings.from_arguments(parser.parse_args(["--source-model", name])).sourceModel
               for name in ("6711", "OncoSeed 6711", "oncoseed6711", "selectSeed 130.002", "130002")]
    assert aliases == ["I125_OncoSeed6711"] * 3 + ["I125_selectSeed_130002"] * 2  # the library's aliases -> the key
    with pytest.raises(InputError, match="'Model6711' invalid: seed model 'Model6711' is not a known seed model"):
        settings.from_arguments(parser.parse_args(["--source-model", "Model6711"]))
    with pytest.raises(InputError, match="allowed is 0.05 to 5 mCi"):
        settings.from_arguments(parser.parse_args(["--seed-activity-mci", "9"]))
    assert "seed" in parser.format_help() and "default 0.5" in parser.format_help()


def test_the_settings_load_neither_scipy_spatial_nor_scipy_optimize():
    """Importing the settings (the command line, the module) stays light: the k-d tree, convex hull and
    least-squares solvers are imported where they are used. A fresh interpreter, so other tests cannot mask it."""
    import subprocess
    import sys

    loaded = subprocess.run([sys.executable, "-c", "import sys, SeedBrachyLib.settings; print(sorted(m for m in "
                             "sys.modules if m in ('scipy.spatial', 'scipy.optimize')))"],
                            capture_output=True, text=True, check=True).stdout.strip()
    assert loaded == "[]", loaded
