"""Seed model files: validation names the first bad field; user models; strength units."""

import copy
import json

import pytest

from SeedBrachyLib import sources
from SeedBrachyLib.cli import main
from SeedBrachyLib.errors import InputError

BASE = json.loads((sources.PACKAGED_DIR / "I125_OncoSeed6711.json").read_text())


def broken(mutate):
    data = copy.deepcopy(BASE)
    mutate(data)
    return data


@pytest.mark.parametrize("mutate,match", [
    (lambda d: d.pop("dose_rate_constant_cGy_per_h_per_U"), "'dose_rate_constant_cGy_per_h_per_U' is missing"),
    (lambda d: d.__setitem__("half_life_days", -59.4), "'half_life_days' = -59.4"),
    (lambda d: d.__setitem__("active_length_cm", 0), "'active_length_cm' = 0"),
    (lambda d: d["radial_dose_function"]["r_cm"].__setitem__(3, 0.2), r"r_cm must increase strictly; .*r_cm\[3\]"),
    (lambda d: d["radial_dose_function"]["gL"].__setitem__(2, -0.1), r"gL\[2\] = -0.1"),
    (lambda d: d["radial_dose_function"]["gL"].pop(), "gL' has 15 values; expected 16"),
    (lambda d: d["anisotropy_function"]["F"][4].__setitem__(1, 0.0), r"F\[4\]\[1\] = 0 "),
    (lambda d: d["anisotropy_function"]["theta_deg"].__setitem__(10, 95.0), "within"),
    (lambda d: d["anisotropy_function"]["F"].pop(), "shape"),
    (lambda d: d.__setitem__("model", ""), "'model' must be non-empty"),
])
def test_validation_names_first_bad_field(mutate, match):
    with pytest.raises(InputError, match=match):
        sources.model_from_dict(broken(mutate), "bad")


def test_malformed_file(tmp_path):
    p = tmp_path / "x.json"
    p.write_text("{not json")
    with pytest.raises(InputError, match="not valid JSON"):
        sources.load_model_file(p)
    with pytest.raises(InputError, match="does not exist"):
        sources.load_model_file(tmp_path / "missing.json")


def test_every_packaged_file_validates_and_carries_citation():
    for key in sources.available_models():
        model = sources.get_model(key)
        assert "Rivard" in model.citation or "TG-43" in model.citation
        assert model.half_life_days == pytest.approx(59.4)


def test_user_model_add_list_and_no_silent_overwrite(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("SEEDBRACHY_SOURCE_DIR", str(tmp_path / "user"))
    mine = broken(lambda d: d.__setitem__("dose_rate_constant_cGy_per_h_per_U", 0.93))
    path = tmp_path / "My_I125.json"
    path.write_text(json.dumps(mine))
    assert main(["models", "--add", str(path)]) == 0
    assert "My_I125" in capsys.readouterr().out
    assert sources.get_model("My_I125").dose_rate_constant == 0.93
    with pytest.raises(InputError, match="exists"):
        sources.add_user_model(path)
    sources.add_user_model(path, overwrite=True)
    clash = tmp_path / "I125_OncoSeed6711.json"
    clash.write_text(json.dumps(mine))
    with pytest.raises(InputError, match="packaged model"):
        sources.add_user_model(clash)
    assert main(["models", "--add", str(tmp_path / "nope.json")]) == 2


def test_model_lookup_exact_or_unique_alias_never_a_part(tmp_path, monkeypatch):
    monkeypatch.setenv("SEEDBRACHY_SOURCE_DIR", str(tmp_path / "user"))
    for alias in ("I125_OncoSeed6711", "6711", "OncoSeed 6711", "oncoseed6711", "i125_oncoseed6711"):
        assert sources.get_model(alias).key == "I125_OncoSeed6711"
    assert sources.get_model("IAI-125A").key == "I125_IsoAid_IAI-125A"
    assert sources.get_model("selectSeed 130.002").key == "I125_selectSeed_130002"
    for part in ("I125", "Onco", "671", "Seed", "IsoAid_IAI"):  # parts of names are never matched
        with pytest.raises(InputError, match="not a known seed model"):
            sources.get_model(part)
    with pytest.raises(InputError, match="available: "):
        sources.get_model("Cs131")
    twin = json.loads((sources.PACKAGED_DIR / "I125_OncoSeed6711.json").read_text())
    twin["model"] = "OncoSeed 6711 (a user's own copy)"
    (tmp_path / "user").mkdir()
    (tmp_path / "user" / "My_copy.json").write_text(json.dumps(twin))
    with pytest.raises(InputError, match="several"):
        sources.get_model("OncoSeed 6711")
    assert sources.get_model("I125_OncoSeed6711").key == "I125_OncoSeed6711"  # the key stays exact


def test_strength_conversion_is_explicit():
    assert sources.mci_to_u(0.5) == pytest.approx(0.635)
    assert sources.u_to_mci(1.27) == pytest.approx(1.0)
    assert sources.mci_to_u(0.5, u_per_mci=1.2) == pytest.approx(0.6)
    with pytest.raises(InputError, match="u_per_mci"):
        sources.mci_to_u(0.5, u_per_mci=0)
    assert sources.get_model("6711").mean_life_h == pytest.approx(2056.7, abs=0.05)


def _set(path, value):
    def mutate(d):
        node = d
        *parents, last = path
        for p in parents:
            node = node[p]
        node[last] = value
    return mutate


@pytest.mark.parametrize("mutate,match", [
    # g_L(1 cm) = 2 would double every dose
    (lambda d: d["radial_dose_function"].__setitem__("gL", [2 * g for g in d["radial_dose_function"]["gL"]]),
     r"g_L\(1 cm\) = 2.0000; TG-43 normalises it to 1 \(allowed 1 \+/- 0.0005\)"),
    # a table only to 0.5 cm would be extrapolated 25-fold at 5 cm
    (lambda d: d.__setitem__("radial_dose_function", {"r_cm": [0.1, 0.25, 0.5], "gL": [1.05, 1.08, 1.07]}),
     r"radial_dose_function.r_cm covers 0.1..0.5 cm; it must cover at least 0.5..5 cm"),
    (lambda d: d["anisotropy_function"].update(r_cm=[2.0, 3.0, 4.0, 5.0, 6.0, 7.0]),
     r"anisotropy_function.r_cm covers 2..7 cm; it must cover at least 1..5 cm"),
    (lambda d: d["anisotropy_factor_1d"].update(r_cm=[0.5, 1, 2, 3, 3.5, 4]),
     r"anisotropy_factor_1d.r_cm covers 0.5..4 cm"),
    # an active length longer than the capsule gives negative dose on the axis
    (_set(["active_length_cm"], 0.5), r"active_length_cm = 0.5 must be shorter than the capsule's outer length "
                                      r"physical_seed.outer_length_cm = 0.45 cm"),
    # no 90-degree row: the dose at 1 cm on the transverse axis would no longer be Lambda x S_K
    (lambda d: (d["anisotropy_function"]["theta_deg"].pop(), d["anisotropy_function"]["F"].pop()),
     r"theta_deg runs 0..80 deg; it must start at 0 and end at 90 deg"),
    (lambda d: d["anisotropy_function"]["F"][10].__setitem__(2, 0.98),
     r"F at 90 deg, r = 2 cm is 0.98; TG-43 normalises F\(r, 90 deg\) to 1"),
    (_set(["physical_seed", "outer_diameter_cm"], -0.08), r"'physical_seed.outer_diameter_cm' = -0.08 invalid"),
])
def test_physically_inconsistent_models_are_refused_naming_field_and_allowed_values(mutate, match):
    with pytest.raises(InputError, match=match):
        sources.model_from_dict(broken(mutate), "bad")


def test_shipped_models_pass_the_consistency_rules_with_their_capsule():
    for key in ("I125_IsoAid_IAI-125A", "I125_Model6702", "I125_OncoSeed6711", "I125_selectSeed_130002"):
        model = sources.get_model(key)
        assert model.active_length_mm < model.outer_length_mm
        assert model.outer_radius_mm == pytest.approx(0.4)  # 0.8 mm diameter: given, or the I-125 default
