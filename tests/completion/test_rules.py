"""The rule file: the defaults load, a facility's file changes them, and every kind of mistake in a
file is reported as a sentence that names the rule and the field (and nothing runs on a bad file)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from chartkeeper.completion.rules import RuleFileError, default_rules, load_rules, parse_rules

MINIMAL = """
version = "t1"
facility = "Test"

[[rule]]
id = "discharge-summary"
title = "Discharge summary"
kind = "document"
classes = ["IMP"]
types = ["http://loinc.org|18842-5"]
anchor = "discharge"
within_hours = 720
responsible = "attending"
"""


def problems(text: str, tmp_path: Path | None = None) -> list[str]:
    with pytest.raises(RuleFileError) as err:
        parse_rules(text, "facility.toml")
    assert "facility.toml" in str(err.value)
    assert err.value.problems, "a RuleFileError lists at least one problem"
    for p in err.value.problems:
        assert p.endswith((".", ")")), f"not a sentence: {p!r}"
    return err.value.problems


# --- the defaults -------------------------------------------------------------------------------


def test_the_default_file_loads_with_every_rule_on_and_a_source_for_each():
    rules = load_rules(None) if not os.environ.get("CHARTKEEPER_COMPLETION_RULES") else default_rules()
    ids = [r.id for r in rules.rules]
    assert ids == ["hp-24h", "operative-report", "discharge-summary", "short-stay-note", "pathology-report",
                   "consultation-report", "verbal-order-cosign", "authentication", "discharge-summary-elements"]
    assert all(r.enabled for r in rules.rules)
    assert all(r.source for r in rules.rules), "every rule says where it comes from"
    assert rules.version and rules.delinquency_days == 30 and rules.reminder_every_days == 3
    assert rules.by_id["hp-24h"].within_hours == 24 and rules.by_id["hp-24h"].before_first_procedure
    assert rules.by_id["verbal-order-cosign"].within_hours == 48
    assert rules.by_id["discharge-summary"].min_stay_hours == 48
    assert rules.by_id["short-stay-note"].max_stay_hours == 48
    assert dict(rules.by_id["discharge-summary-elements"].elements).keys() == {
        "final_diagnoses", "procedures", "disposition", "discharge_medications", "follow_up"}


def test_load_rules_reads_the_file_named_by_the_environment(tmp_path, monkeypatch):
    f = tmp_path / "stmary.toml"
    f.write_text('extends = "default"\nversion = "2026.1-stmary"\n[overrides.hp-24h]\nwithin_hours = 48\n')
    monkeypatch.setenv("CHARTKEEPER_COMPLETION_RULES", str(f))
    rules = load_rules()
    assert rules.version == "2026.1-stmary" and rules.source == str(f)
    assert rules.by_id["hp-24h"].within_hours == 48


def test_a_full_facility_file_replaces_the_defaults():
    rules = parse_rules(MINIMAL, "facility.toml")
    assert [r.id for r in rules.rules] == ["discharge-summary"]
    assert rules.classes == frozenset({"IMP"})


# --- overrides ----------------------------------------------------------------------------------


def test_overrides_switch_rules_off_and_change_limits():
    rules = parse_rules("""
extends = "default"
version = "2026.1-stmary"
facility = "St Mary's"
[delinquency]
days_after_discharge = 21
[notifications]
reminder_every_days = 7
escalate_to = ["cmo@stmary.example.org"]
[overrides.verbal-order-cosign]
enabled = false
[overrides.hp-24h]
within_hours = 48
[overrides.discharge-summary]
min_stay_hours = 72
[overrides.short-stay-note]
max_stay_hours = 72
""", "stmary.toml")
    assert not rules.by_id["verbal-order-cosign"].enabled
    assert "verbal-order-cosign" not in {r.id for r in rules.active}
    assert rules.by_id["hp-24h"].within_hours == 48
    assert rules.by_id["hp-24h"].before_first_procedure, "what an override does not name stays as it was"
    assert rules.by_id["discharge-summary"].min_stay_hours == 72
    assert rules.by_id["short-stay-note"].max_stay_hours == 72
    assert rules.delinquency_days == 21 and rules.reminder_every_days == 7
    assert rules.escalate_to == ("cmo@stmary.example.org",)
    assert rules.facility == "St Mary's" and rules.version == "2026.1-stmary"
    # The defaults themselves are untouched.
    assert default_rules().by_id["hp-24h"].within_hours == 24 and default_rules().by_id["verbal-order-cosign"].enabled


def test_a_facility_may_add_its_own_rule_beside_the_defaults():
    rules = parse_rules('extends = "default"\n' + MINIMAL.replace('"discharge-summary"', '"dc-summary-local"')
                        .replace('version = "t1"', ""), "f.toml")
    assert "dc-summary-local" in rules.by_id and "hp-24h" in rules.by_id


# --- every kind of bad file ---------------------------------------------------------------------


def test_bad_toml_says_it_is_not_valid_toml_and_where():
    [p] = problems(MINIMAL + "\nwithin_hours = = 3\n")
    assert "not valid TOML" in p and "line" in p


def test_unknown_keys_are_named_with_the_rule_and_what_is_allowed():
    ps = problems("colour = 1\n" + MINIMAL.replace("within_hours = 720", "within_hours = 720\nwithin_days = 30"))
    assert any("'discharge-summary'" in p and "'within_days'" in p and "allowed" in p for p in ps), ps
    assert any("'colour'" in p and "top-level" in p for p in ps), ps


def test_a_bad_kind_names_the_rule_and_the_kinds():
    [p] = problems(MINIMAL.replace('kind = "document"', 'kind = "checklist"'))
    assert "'discharge-summary'" in p and "kind" in p and "'checklist'" in p and "document" in p


def test_missing_types_names_the_rule_and_the_field():
    [p] = problems(MINIMAL.replace('types = ["http://loinc.org|18842-5"]\n', ""))
    assert "'discharge-summary'" in p and "types is missing" in p


def test_malformed_codes_name_the_field():
    [p] = problems(MINIMAL.replace('"http://loinc.org|18842-5"', '"18842-5"'))
    assert "'discharge-summary'" in p and "types" in p and "system|code" in p


@pytest.mark.parametrize("value", ["-5", "0", '"24"', "true"])
def test_hours_must_be_a_positive_number(value):
    [p] = problems(MINIMAL.replace("within_hours = 720", f"within_hours = {value}"))
    assert "'discharge-summary'" in p and "within_hours" in p and "greater than 0" in p


def test_negative_hours_in_an_override_name_the_override():
    ps = problems('extends = "default"\n[overrides.hp-24h]\nwithin_hours = -24\n')
    assert any("'hp-24h'" in p and "within_hours" in p and "-24" in p for p in ps), ps


def test_a_duplicate_id_is_reported():
    ps = problems(MINIMAL + MINIMAL.split("\n", 3)[3].replace('version = "t1"', ""))
    assert any("'discharge-summary'" in p and "defined twice" in p for p in ps), ps


def test_redefining_a_default_rule_points_at_overrides():
    ps = problems('extends = "default"\n' + MINIMAL.replace('version = "t1"', ""))
    assert any("'discharge-summary'" in p and "defined twice" in p and "overrides" in p for p in ps), ps


def test_an_override_of_an_unknown_rule_lists_the_known_ones():
    [p] = problems('extends = "default"\n[overrides.hp-12h]\nenabled = false\n')
    assert "overrides.hp-12h" in p and "names no rule" in p and "hp-24h" in p


def test_an_override_may_not_change_what_a_rule_checks():
    [p] = problems('extends = "default"\n[overrides.hp-24h]\ntypes = ["http://loinc.org|1-1"]\n')
    assert "overrides.hp-24h" in p and "cannot change types" in p


def test_every_rule_switched_off_is_refused():
    from chartkeeper.completion.rules import default_rules as d

    text = 'extends = "default"\n' + "".join(f"[overrides.{r.id}]\nenabled = false\n" for r in d().rules)
    [p] = problems(text)
    assert "Every rule is switched off" in p


def test_an_unknown_base_and_a_missing_version_are_reported_together():
    ps = problems(MINIMAL.replace('version = "t1"', 'extends = "stmary"'))
    assert any("extends" in p and "'stmary'" in p for p in ps), ps
    assert any("version is missing" in p for p in ps), ps


def test_every_problem_is_reported_at_once():
    bad = MINIMAL.replace('kind = "document"', 'kind = "document"\nper = "visit"').replace(
        "within_hours = 720", "within_hours = -1").replace('classes = ["IMP"]', 'classes = ["INPATIENT"]')
    ps = problems(bad + "\n[delinquency]\ndays_after_discharge = 0\n")
    text = "\n".join(ps)
    for field in ("per", "within_hours", "classes", "days_after_discharge"):
        assert field in text, (field, ps)
    assert len(ps) >= 4


def test_bad_settings_in_delinquency_and_notifications():
    ps = problems(MINIMAL + '\n[notifications]\nreminder_every_days = 0\nescalate_to = ["not-an-address"]\npager = 1\n')
    text = "\n".join(ps)
    assert "reminder_every_days" in text and "escalate_to" in text and "notifications.pager" in text


def test_elements_rule_needs_its_headings():
    bad = MINIMAL.replace('kind = "document"', 'kind = "elements"').replace("[[rule]]", "[[rule]]") + \
        "\n[rule.elements]\ndisposition = []\n"
    ps = problems(bad)
    assert any("'discharge-summary'" in p and "'disposition'" in p and "headings" in p for p in ps), ps


def test_an_unreadable_path_is_a_rule_file_error_naming_the_variable(tmp_path):
    missing = tmp_path / "nope.toml"
    with pytest.raises(RuleFileError) as err:
        load_rules(missing)
    assert str(missing) in str(err.value)
    assert "cannot be read" in err.value.problems[0] and "CHARTKEEPER_COMPLETION_RULES" in err.value.problems[0]
    with pytest.raises(RuleFileError):
        load_rules(tmp_path)  # a directory is not a rule file


def test_a_rule_file_error_reads_as_a_list_for_the_operator():
    with pytest.raises(RuleFileError) as err:
        parse_rules(MINIMAL.replace("within_hours = 720", "within_hours = -1").replace('kind = "document"',
                                                                                        'kind = "document"\nper = "x"'),
                    "/etc/chartkeeper/rules.toml")
    msg = str(err.value)
    assert msg.startswith("The chart completion rule file /etc/chartkeeper/rules.toml has 2 problems:")
    assert msg.count("\n  - ") == 2
