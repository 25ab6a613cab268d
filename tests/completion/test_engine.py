"""The analysis engine on its own (no database): for each default rule, a chart that passes it and
one that fails it. Charts are built from FHIR resources, the way the service builds them.

A finding is open (``satisfied_at`` None: missing or unsigned), or *late* (arrived after its due time);
a requirement met in time gives no finding.
"""

from __future__ import annotations

from datetime import datetime

import pytest
from completion_fhir import (
    CONSULT,
    DISCHARGE,
    FULL_SUMMARY,
    HP,
    OP_NOTE,
    PATHOLOGY,
    PROGRESS,
    SHORT_STAY,
    VERBAL,
    consult_order,
    docref,
    encounter,
    procedure,
    specimen,
    when,
)

from chartkeeper.completion import engine
from chartkeeper.completion.rules import default_rules, parse_rules

RULES = default_rules()
TEXT_TYPES = frozenset(t for r in RULES.active if r.kind == "elements" for t in r.types)
P = "pat-1"
E = "enc-1"


def chart(enc=None, docs=(), procs=(), orders=(), specs=(), signatures=None):
    return engine.chart_from_resources(enc or encounter(E, P), docs, procs, orders, specs, signatures or {},
                                       text_types=TEXT_TYPES)


def findings(c, rule_id=None, rules=RULES):
    out = engine.evaluate(c, rules)
    return [f for f in out if rule_id is None or f.rule_id == rule_id]


def signed(did, kind, at_hours, **kw):
    return docref(did, P, E, kind, at_hours, signed=True, **kw)


def complete_chart_docs(hours=96):
    """What a complete stay of ``hours`` has: a signed H&P in time and a signed, full summary."""
    kind = DISCHARGE if hours >= 48 else SHORT_STAY
    return [signed("hp", HP, 6), signed("dc", kind, hours - 2, text=FULL_SUMMARY)]


def test_a_complete_chart_has_no_findings():
    assert findings(chart(docs=complete_chart_docs())) == []


def test_charts_not_discharged_or_of_classes_no_rule_covers_are_not_analysed():
    assert findings(chart(encounter(E, P, hours=None))) == []
    assert findings(chart(encounter(E, P, cls="HH"))) == []


# --- hp-24h -------------------------------------------------------------------------------------


def test_hp_within_24_hours_passes():
    assert findings(chart(docs=complete_chart_docs()), "hp-24h") == []


def test_hp_missing_is_open_for_the_attending_due_24h_after_admission():
    [f] = findings(chart(docs=[signed("dc", DISCHARGE, 90, text=FULL_SUMMARY)]), "hp-24h")
    assert f.satisfied_at is None and f.physician_id == "dr-att" and f.due_at == when(24) and f.subject == ""


def test_hp_late_is_recorded_as_satisfied_late():
    [f] = findings(chart(docs=[signed("hp", HP, 30)]), "hp-24h")
    assert f.due_at == when(24) and f.satisfied_at == when(30) and f.document_id == "hp"


def test_hp_after_the_first_surgery_is_late_even_within_24_hours():
    c = chart(docs=[signed("hp", HP, 8), signed("op", OP_NOTE, 7)], procs=[procedure("pr1", P, E, 6)])
    [f] = findings(c, "hp-24h")
    assert f.due_at == when(6) and f.satisfied_at == when(8)


def test_hp_before_the_first_surgery_passes():
    c = chart(docs=[signed("hp", HP, 4), signed("op", OP_NOTE, 7)], procs=[procedure("pr1", P, E, 6)])
    assert findings(c, "hp-24h") == []


def test_a_non_surgical_procedure_does_not_move_the_hp_deadline():
    c = chart(docs=[signed("hp", HP, 8)], procs=[procedure("pr1", P, E, 6, surgical=False)])
    assert findings(c, "hp-24h") == []


# --- operative-report ---------------------------------------------------------------------------


def test_an_operative_report_per_surgical_procedure_passes():
    c = chart(docs=[signed("op1", OP_NOTE, 11), signed("op2", OP_NOTE, 51)],
              procs=[procedure("pr1", P, E, 10), procedure("pr2", P, E, 50)])
    assert findings(c, "operative-report") == []


def test_two_procedures_and_one_note_give_one_deficiency_for_the_surgeon():
    c = chart(docs=[signed("op1", OP_NOTE, 11)], procs=[procedure("pr1", P, E, 10), procedure("pr2", P, E, 50)])
    [f] = findings(c, "operative-report")
    assert f.subject == "Procedure/pr2" and f.satisfied_at is None
    assert f.physician_id == "dr-surg" and f.due_at == when(74)


def test_a_non_surgical_procedure_needs_no_operative_report():
    c = chart(procs=[procedure("pr1", P, E, 10, surgical=False)])
    assert findings(c, "operative-report") == []


def test_a_note_written_before_the_procedure_does_not_count_for_it():
    c = chart(docs=[signed("op1", OP_NOTE, 2)], procs=[procedure("pr1", P, E, 10)])
    [f] = findings(c, "operative-report")
    assert f.subject == "Procedure/pr1" and f.satisfied_at is None


# --- discharge-summary and short-stay-note: by length of stay -----------------------------------


@pytest.mark.parametrize("hours", [48, 96])
def test_stays_of_48_hours_or_more_need_a_discharge_summary(hours):
    c = chart(encounter(E, P, hours=hours), docs=[signed("hp", HP, 6)])
    [f] = findings(c, "discharge-summary")
    assert f.satisfied_at is None and f.due_at == when(hours + 720) and f.physician_id == "dr-att"
    assert findings(c, "short-stay-note") == []
    assert findings(chart(encounter(E, P, hours=hours), docs=complete_chart_docs(hours)), "discharge-summary") == []


def test_stays_under_48_hours_need_a_short_stay_note_not_a_summary():
    c = chart(encounter(E, P, hours=30), docs=[signed("hp", HP, 6)])
    assert [f.rule_id for f in findings(c)] == ["short-stay-note"]
    ok = chart(encounter(E, P, hours=30), docs=[signed("hp", HP, 6), signed("ss", SHORT_STAY, 29)])
    assert findings(ok) == []


def test_a_discharge_summary_also_satisfies_a_short_stay():
    c = chart(encounter(E, P, hours=30), docs=[signed("hp", HP, 6), signed("dc", DISCHARGE, 29, text=FULL_SUMMARY)])
    assert findings(c, "short-stay-note") == []


def test_a_summary_after_30_days_is_late():
    [f] = findings(chart(docs=[signed("hp", HP, 6), signed("dc", DISCHARGE, 96 + 800, text=FULL_SUMMARY)]),
                   "discharge-summary")
    assert f.satisfied_at == when(896) and f.due_at == when(816)


# --- pathology-report ---------------------------------------------------------------------------


def test_a_specimen_taken_during_the_stay_needs_a_pathology_report():
    c = chart(docs=complete_chart_docs(), specs=[specimen("sp1", P, 20)])
    [f] = findings(c, "pathology-report")
    assert f.subject == "Specimen/sp1" and f.satisfied_at is None and f.due_at == when(20 + 168)
    ok = chart(docs=[*complete_chart_docs(), signed("path", PATHOLOGY, 60)], specs=[specimen("sp1", P, 20)])
    assert findings(ok, "pathology-report") == []


def test_a_specimen_from_another_time_is_not_this_stays():
    c = chart(docs=complete_chart_docs(), specs=[specimen("sp-old", P, -24 * 40)])
    assert findings(c, "pathology-report") == []


# --- consultation-report ------------------------------------------------------------------------


def test_a_consult_order_needs_a_consultation_report_from_the_consultant():
    c = chart(docs=complete_chart_docs(), orders=[consult_order("so1", P, E, 10)])
    [f] = findings(c, "consultation-report")
    assert f.subject == "ServiceRequest/so1" and f.physician_id == "dr-cons" and f.due_at == when(58)
    ok = chart(docs=[*complete_chart_docs(), signed("cn", CONSULT, 30, author="dr-cons")],
               orders=[consult_order("so1", P, E, 10)])
    assert findings(ok, "consultation-report") == []


def test_an_order_that_is_not_a_consult_needs_no_report():
    c = chart(docs=complete_chart_docs(), orders=[consult_order("so1", P, E, 10, consult=False)])
    assert findings(c) == []


# --- verbal-order-cosign ------------------------------------------------------------------------


def test_a_verbal_order_signed_at_47_hours_passes_and_at_49_hours_is_late():
    docs = [*complete_chart_docs(), signed("vo", VERBAL, 10)]
    assert findings(chart(docs=docs, signatures={"DocumentReference/vo": when(10 + 47)}), "verbal-order-cosign") == []
    [f] = findings(chart(docs=docs, signatures={"DocumentReference/vo": when(10 + 49)}), "verbal-order-cosign")
    assert f.due_at == when(58) and f.satisfied_at == when(59) and f.subject == "DocumentReference/vo"


def test_an_unsigned_verbal_order_is_open_for_its_author():
    docs = [*complete_chart_docs(), docref("vo", P, E, VERBAL, 10, author="dr-ord")]
    [f] = findings(chart(docs=docs), "verbal-order-cosign")
    assert f.satisfied_at is None and f.physician_id == "dr-ord"
    # Verbal orders have their own rule: the general signature rule leaves them alone.
    assert findings(chart(docs=docs), "authentication") == []


def test_a_provenance_signature_on_a_document_not_marked_signed_does_not_count():
    docs = [*complete_chart_docs(), docref("vo", P, E, VERBAL, 10)]
    [f] = findings(chart(docs=docs, signatures={"DocumentReference/vo": when(12)}), "verbal-order-cosign")
    assert f.satisfied_at is None


# --- authentication -----------------------------------------------------------------------------


def test_an_unsigned_document_needs_its_authors_signature():
    docs = [*complete_chart_docs(), docref("pn", P, E, PROGRESS, 30, author="dr-res")]
    [f] = findings(chart(docs=docs), "authentication")
    assert f.subject == "DocumentReference/pn" and f.document_id == "pn" and f.physician_id == "dr-res"
    assert f.satisfied_at is None and f.due_at == when(96 + 720)


def test_an_imported_signed_document_counts_as_signed_at_its_date():
    docs = [*complete_chart_docs(), signed("pn", PROGRESS, 30)]
    assert findings(chart(docs=docs), "authentication") == []


def test_a_signature_after_the_limit_is_late():
    docs = [*complete_chart_docs(), signed("pn", PROGRESS, 30)]
    [f] = findings(chart(docs=docs, signatures={"DocumentReference/pn": when(96 + 721)}), "authentication")
    assert f.satisfied_at == when(817)


def test_a_document_without_an_author_falls_to_the_attending():
    d = docref("pn", P, E, PROGRESS, 30)
    del d["author"]
    [f] = findings(chart(docs=[*complete_chart_docs(), d]), "authentication")
    assert f.physician_id == "dr-att"


# --- discharge-summary-elements -----------------------------------------------------------------


def test_a_summary_missing_an_element_names_it():
    text = FULL_SUMMARY.replace("FOLLOW-UP:", "NEXT STEPS:")
    [f] = findings(chart(docs=[signed("hp", HP, 6), signed("dc", DISCHARGE, 90, text=text)]),
                   "discharge-summary-elements")
    assert f.subject == "DocumentReference/dc#follow_up" and "follow up" in f.title and f.document_id == "dc"


def test_headings_match_in_any_case_and_with_or_without_colon():
    text = "final diagnoses\nx\nProcedures:\nnone\nDisposition\nhome\nMedications at discharge:\nnone\nFollow up\nGP\n"
    assert findings(chart(docs=[signed("hp", HP, 6), signed("dc", DISCHARGE, 90, text=text)])) == []


def test_when_the_patient_died_follow_up_and_discharge_medications_are_not_required():
    text = "DISCHARGE DIAGNOSES:\nx\nPROCEDURES:\nnone\nDISPOSITION:\nExpired\n"
    docs = [signed("hp", HP, 6), signed("dc", DISCHARGE, 90, text=text)]
    assert findings(chart(encounter(E, P, disposition="exp"), docs=docs), "discharge-summary-elements") == []
    missing = {f.subject.split("#")[1] for f in findings(chart(encounter(E, P, disposition="home"), docs=docs),
                                                          "discharge-summary-elements")}
    assert missing == {"follow_up", "discharge_medications"}


def test_an_addendum_supplies_a_missing_element():
    text = FULL_SUMMARY.replace("FOLLOW-UP:", "NEXT STEPS:")
    addendum = signed("add", DISCHARGE, 100, text="FOLLOW-UP:\nCardiology clinic in two weeks\n", appends="dc")
    docs = [signed("hp", HP, 6), signed("dc", DISCHARGE, 90, text=text), addendum]
    assert findings(chart(docs=docs), "discharge-summary-elements") == []


def test_an_addendum_of_another_type_also_supplies_the_element():
    text = FULL_SUMMARY.replace("DISPOSITION:", "WHERE:")
    addendum = signed("add", PROGRESS, 100, text="DISPOSITION:\nHome with services\n", appends="dc")
    docs = [signed("hp", HP, 6), signed("dc", DISCHARGE, 90, text=text), addendum]
    assert findings(chart(docs=docs), "discharge-summary-elements") == []


def test_a_composition_section_title_counts_as_a_heading():
    comp = {"resourceType": "Composition", "id": "c1", "status": "final",
            "type": {"coding": [{"system": "http://loinc.org", "code": "18842-5"}]},
            "date": "2026-01-09T06:00:00Z", "author": [{"reference": "Practitioner/dr-att"}], "title": "DC",
            "attester": [{"mode": "legal", "time": "2026-01-09T06:00:00Z"}],
            "section": [{"title": t} for t in ("Discharge diagnoses", "Procedures", "Disposition",
                                                "Discharge medications", "Follow-up")]}
    assert findings(chart(docs=[signed("hp", HP, 6), comp])) == []


# --- entered in error -----------------------------------------------------------------------------


def test_documents_entered_in_error_do_not_count():
    docs = [docref("hp", P, E, HP, 6, status="entered-in-error", signed=True),
            signed("dc", DISCHARGE, 90, text=FULL_SUMMARY)]
    [f] = findings(chart(docs=docs), "hp-24h")
    assert f.satisfied_at is None
    assert findings(chart(docs=docs), "authentication") == [], "a document in error needs no signature"


def test_procedures_orders_and_specimens_entered_in_error_need_nothing():
    pr = procedure("pr1", P, E, 10)
    pr["status"] = "entered-in-error"
    so = consult_order("so1", P, E, 10)
    so["status"] = "entered-in-error"
    sp = specimen("sp1", P, 20)
    sp["status"] = "entered-in-error"
    assert findings(chart(docs=complete_chart_docs(), procs=[pr], orders=[so], specs=[sp])) == []


# --- rules changed by a facility ----------------------------------------------------------------


def test_a_facility_override_changes_what_the_engine_finds():
    rules = parse_rules('extends = "default"\n[overrides.hp-24h]\nwithin_hours = 48\n'
                        '[overrides.authentication]\nenabled = false\n', "f.toml")
    docs = [signed("hp", HP, 30), signed("dc", DISCHARGE, 90, text=FULL_SUMMARY), docref("pn", P, E, PROGRESS, 30)]
    assert {f.rule_id for f in findings(chart(docs=docs))} == {"hp-24h", "authentication"}
    assert findings(chart(docs=docs), rules=rules) == []


def test_parse_time_reads_fhir_dates_as_utc():
    assert engine.parse_time("2026-01-05") == datetime.fromisoformat("2026-01-05T00:00:00+00:00")
    assert engine.parse_time("2026-01-05T10:00:00+02:00") == datetime.fromisoformat("2026-01-05T08:00:00+00:00")
    assert engine.parse_time("not a date") is None and engine.parse_time(None) is None
