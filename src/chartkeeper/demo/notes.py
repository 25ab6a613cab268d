"""Document text for the demo population, written the way physicians write it.

Every function takes the facts the generator has already coded and returns plain text, so a note
always agrees with the coded record: the H&P and discharge summary name the diagnoses, medications and
allergies that exist as resources; negated findings read "Denies ..."; familiar abbreviations (HTN, DM2,
CHF, COPD) appear in the history sections and full phrases in the diagnosis lists.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from chartkeeper.demo.vocab import Allergen, Dx, Med


@dataclass(slots=True)
class Chart:
    """What an author knows about the patient when writing a note."""

    name: str
    mrn: str
    dob: str
    age: int
    sex: str  # "male" | "female"
    problems: list[Dx] = field(default_factory=list)
    meds: list[Med] = field(default_factory=list)
    allergies: list[tuple[Allergen, str]] = field(default_factory=list)  # (allergen, reaction text)
    social: str = ""
    family: str = ""
    surgical: list[str] = field(default_factory=list)

    @property
    def he(self) -> str:
        return "He" if self.sex == "male" else "She"

    @property
    def his(self) -> str:
        return "his" if self.sex == "male" else "her"

    @property
    def person(self) -> str:
        if self.age < 18:
            return "boy" if self.sex == "male" else "girl"
        return "man" if self.sex == "male" else "woman"

    def intro(self) -> str:
        return f"{self.age}-year-old {self.person}"


def _header(title: str, chart: Chart, lines: Iterable[str]) -> list[str]:
    out = [title.upper(), "", f"Patient: {chart.name}    MRN: {chart.mrn}    DOB: {chart.dob}"]
    out.extend(lines)
    out.append("")
    return out


def signature(author: str, signed_at: str | None) -> str:
    if signed_at:
        return f"Electronically signed by {author} on {signed_at}."
    return f"Dictated by {author}. Not yet signed."


def problem_abbrevs(problems: Sequence[Dx]) -> str:
    seen: list[str] = []
    for d in problems:
        label = d.abbrev or d.phrase.lower()
        if label not in seen:
            seen.append(label)
    return ", ".join(seen)


def allergy_text(chart: Chart) -> str:
    if not chart.allergies:
        return "No known drug allergies."
    return "; ".join(f"{a.text} ({reaction})" for a, reaction in chart.allergies) + "."


def med_lines(meds: Sequence[Med]) -> list[str]:
    if not meds:
        return ["None."]
    return [f"- {m.name}: {m.sig}" for m in meds]


def pmh_lines(problems: Sequence[Dx]) -> list[str]:
    if not problems:
        return ["No significant past medical history."]
    return [f"{i}. {d.phrase}" + (f" ({d.abbrev})" if d.abbrev and d.abbrev.lower() != d.phrase.lower() else "")
            for i, d in enumerate(problems, 1)]


def vitals_text(v: dict[str, float]) -> str:
    parts = []
    if "sbp" in v:
        parts.append(f"BP {v['sbp']:.0f}/{v['dbp']:.0f}")
    if "hr" in v:
        parts.append(f"HR {v['hr']:.0f}")
    if "temp" in v:
        parts.append(f"T {v['temp']:.1f} C")
    if "rr" in v:
        parts.append(f"RR {v['rr']:.0f}")
    if "spo2" in v:
        parts.append(f"SpO2 {v['spo2']:.0f}% on room air")
    if "weight" in v:
        parts.append(f"weight {v['weight']:.1f} kg")
    return ", ".join(parts) + "." if parts else "Not recorded."


def labs_text(labs: Sequence[tuple[str, str]]) -> str:
    return ", ".join(f"{name} {value}" for name, value in labs) + "." if labs else "None drawn."


# --------------------------------------------------------------------------------------------------
# Inpatient documents
# --------------------------------------------------------------------------------------------------


def history_and_physical(
    chart: Chart, *, admitted: str, attending: str, cc: str, hpi: str, negatives: str, exam: str,
    vitals: dict[str, float], labs: Sequence[tuple[str, str]], imaging: str, assessment: Sequence[tuple[str, str]],
    signed_at: str | None,
) -> str:
    hx = f"with a history of {problem_abbrevs(chart.problems)} " if chart.problems else ""
    out = _header("History and Physical", chart, [f"Admission date: {admitted}    Attending: {attending}"])
    out += ["CHIEF COMPLAINT", cc + ".", "",
            "HISTORY OF PRESENT ILLNESS", f"{chart.intro()} {hx}who {hpi}. {negatives}", "",
            "PAST MEDICAL HISTORY", *pmh_lines(chart.problems), "",
            "PAST SURGICAL HISTORY", ", ".join(chart.surgical) + "." if chart.surgical else "None.", "",
            "MEDICATIONS", *med_lines(chart.meds), "",
            "ALLERGIES", allergy_text(chart), "",
            "SOCIAL HISTORY", chart.social, "",
            "FAMILY HISTORY", chart.family, "",
            "REVIEW OF SYSTEMS", f"Positive as in HPI. {negatives} All other systems reviewed and negative.", "",
            "PHYSICAL EXAMINATION", f"Vitals: {vitals_text(vitals)}", f"General: {exam}", "",
            "LABORATORY DATA", labs_text(labs), ""]
    if imaging:
        out += ["IMAGING", imaging, ""]
    out.append("ASSESSMENT AND PLAN")
    for i, (problem, plan) in enumerate(assessment, 1):
        out.append(f"{i}. {problem}: {plan}")
    out += ["", signature(attending, signed_at)]
    return "\n".join(out)


def progress_note(
    chart: Chart, *, date: str, author: str, day: int, subjective: str, vitals: dict[str, float],
    labs: Sequence[tuple[str, str]], assessment: Sequence[tuple[str, str]], signed_at: str | None,
) -> str:
    out = _header("Progress Note", chart, [f"Date: {date}    Hospital day {day}    Author: {author}"])
    out += ["SUBJECTIVE", subjective, "", "OBJECTIVE", f"Vitals: {vitals_text(vitals)}", f"Labs: {labs_text(labs)}", "",
            "ASSESSMENT AND PLAN"]
    for i, (problem, plan) in enumerate(assessment, 1):
        out.append(f"{i}. {problem}: {plan}")
    out += ["", signature(author, signed_at)]
    return "\n".join(out)


def discharge_summary(
    chart: Chart, *, admitted: str, discharged: str, attending: str, principal: str, secondary: Sequence[str],
    procedures: Sequence[tuple[str, str]], course: str, home_meds: Sequence[Med], new_meds: Sequence[Med],
    stopped_meds: Sequence[Med], disposition: str, follow_up: str, condition: str, omit: str,
    signed_at: str | None, expired: bool = False,
) -> str:
    title = "Discharge Summary" if not expired else "Discharge Summary (Death Summary)"
    out = _header(title, chart, [f"Admission date: {admitted}    Discharge date: {discharged}    Attending: {attending}"])
    sections: list[tuple[str, list[str]]] = []
    sections.append(("REASON FOR ADMISSION", [f"{chart.intro()} admitted with {principal.lower()}."]))
    dx = [f"1. {principal} (principal diagnosis)"] + [f"{i}. {s}" for i, s in enumerate(secondary, 2)]
    sections.append(("DISCHARGE DIAGNOSES", dx))
    sections.append(("PROCEDURES", [f"- {p} ({d})" for p, d in procedures] or ["None."]))
    sections.append(("HOSPITAL COURSE", [course]))
    sections.append(("ALLERGIES", [allergy_text(chart)]))
    if expired:
        sections.append(("DISCHARGE MEDICATIONS", ["None (patient expired)."]))
    else:
        meds = [f"- {m.name}: {m.sig} (continue)" for m in home_meds if m not in stopped_meds]
        meds += [f"- {m.name}: {m.sig} (NEW)" for m in new_meds]
        meds += [f"- STOP {m.name}" for m in stopped_meds]
        sections.append(("DISCHARGE MEDICATIONS", meds or ["None."]))
    sections.append(("CONDITION AT DISCHARGE", [condition]))
    sections.append(("DISPOSITION", [disposition]))
    if not expired:
        sections.append(("FOLLOW-UP", [follow_up]))
    for name, lines in sections:
        if name == omit:
            continue
        out.append(name)
        out.extend(lines)
        out.append("")
    out.append(signature(attending, signed_at))
    return "\n".join(out)


def operative_note(
    chart: Chart, *, date: str, surgeon: str, preop: str, postop: str, procedure: str, anesthesia: str,
    findings: str, technique: str, ebl: int, specimen: str, signed_at: str | None,
) -> str:
    out = _header("Operative Report", chart, [f"Date of operation: {date}    Surgeon: {surgeon}"])
    out += ["PREOPERATIVE DIAGNOSIS", preop, "", "POSTOPERATIVE DIAGNOSIS", postop, "",
            "PROCEDURE", procedure, "", "ANESTHESIA", anesthesia.capitalize() + ".", "",
            "FINDINGS", findings, "", "DESCRIPTION OF PROCEDURE",
            "The patient was identified, consent confirmed and a time-out performed. " + technique
            + " Sponge and needle counts were correct. The patient tolerated the procedure well.", "",
            "ESTIMATED BLOOD LOSS", f"{ebl} mL.", "", "SPECIMENS", specimen or "None.", "",
            "COMPLICATIONS", "None.", "", signature(surgeon, signed_at)]
    return "\n".join(out)


def consult_note(
    chart: Chart, *, date: str, consultant: str, specialty: str, requested_by: str, reason: str,
    impression: str, recommendations: str, signed_at: str | None,
) -> str:
    out = _header(f"{specialty} Consultation", chart, [f"Date: {date}    Consultant: {consultant}",
                                                      f"Requesting physician: {requested_by}"])
    out += ["REASON FOR CONSULTATION", reason, "", "HISTORY OF PRESENT ILLNESS",
            f"{chart.intro()} with a history of {problem_abbrevs(chart.problems) or 'no chronic illness'}, seen at the "
            f"request of {requested_by} for {reason.lower().rstrip('.')}.", "",
            "MEDICATIONS", *med_lines(chart.meds), "", "ALLERGIES", allergy_text(chart), "",
            "IMPRESSION", impression, "", "RECOMMENDATIONS", recommendations, "",
            "Thank you for this consultation. We will follow.", "", signature(consultant, signed_at)]
    return "\n".join(out)


def verbal_order(chart: Chart, *, date: str, physician: str, nurse: str, order: str, cosigned_at: str | None) -> str:
    out = _header("Verbal Order", chart, [f"Date and time received: {date}"])
    out += [f"Order: {order}", f"Ordering physician: {physician}",
            f"Received by: {nurse}. Order read back and verified.", "",
            f"Co-signed by {physician} on {cosigned_at}." if cosigned_at else "Awaiting physician co-signature."]
    return "\n".join(out)


# --------------------------------------------------------------------------------------------------
# Outpatient and emergency documents
# --------------------------------------------------------------------------------------------------


def office_note(
    chart: Chart, *, date: str, author: str, visit: str, subjective: str, vitals: dict[str, float],
    labs: Sequence[tuple[str, str]], assessment: Sequence[tuple[str, str]], signed_at: str | None,
) -> str:
    out = _header("Progress Note", chart, [f"Date of service: {date}    Provider: {author}    Visit: {visit}"])
    out += ["SUBJECTIVE", subjective, "", "CURRENT MEDICATIONS", *med_lines(chart.meds), "",
            "ALLERGIES", allergy_text(chart), "",
            "OBJECTIVE", f"Vitals: {vitals_text(vitals)}"]
    if labs:
        out.append(f"Labs: {labs_text(labs)}")
    out += ["", "ASSESSMENT AND PLAN"]
    for i, (problem, plan) in enumerate(assessment, 1):
        out.append(f"{i}. {problem}: {plan}")
    out += ["", signature(author, signed_at)]
    return "\n".join(out)


def ed_note(
    chart: Chart, *, date: str, author: str, cc: str, hpi: str, negatives: str, exam: str, vitals: dict[str, float],
    labs: Sequence[tuple[str, str]], imaging: str, impression: str, plan: str, disposition: str, signed_at: str | None,
) -> str:
    hx = f"with a history of {problem_abbrevs(chart.problems)} " if chart.problems else ""
    out = _header("Emergency Department Note", chart, [f"Date of service: {date}    Physician: {author}"])
    out += ["CHIEF COMPLAINT", cc + ".", "", "HISTORY OF PRESENT ILLNESS", f"{chart.intro()} {hx}who {hpi}. {negatives}", "",
            "MEDICATIONS", *med_lines(chart.meds), "", "ALLERGIES", allergy_text(chart), "",
            "PHYSICAL EXAMINATION", f"Vitals: {vitals_text(vitals)}", exam, ""]
    if labs:
        out += ["RESULTS", labs_text(labs), ""]
    if imaging:
        out += ["IMAGING", imaging, ""]
    out += ["MEDICAL DECISION MAKING", plan, "", "IMPRESSION", impression, "", "DISPOSITION", disposition, "",
            signature(author, signed_at)]
    return "\n".join(out)


# --------------------------------------------------------------------------------------------------
# Diagnostic reports
# --------------------------------------------------------------------------------------------------


def radiology_report(
    chart: Chart, *, date: str, radiologist: str, study: str, indication: str, findings: str, impression: str,
    signed_at: str | None,
) -> str:
    out = _header("Radiology Report", chart, [f"Exam date: {date}    Exam: {study}"])
    out += ["CLINICAL INDICATION", indication, "", "TECHNIQUE", f"{study} performed per protocol.", "",
            "COMPARISON", "None available.", "", "FINDINGS", findings, "", "IMPRESSION", impression, "",
            signature(radiologist, signed_at)]
    return "\n".join(out)


def pathology_report(
    chart: Chart, *, accession: str, collected: str, reported: str, pathologist: str, submitter: str,
    specimens: Sequence[str], history: str, gross: str, diagnosis: Sequence[str], synoptic: Sequence[tuple[str, str]],
    comment: str, signed_at: str | None,
) -> str:
    out = _header("Surgical Pathology Report", chart, [
        f"Accession: {accession}    Collected: {collected}    Reported: {reported}",
        f"Submitting physician: {submitter}    Pathologist: {pathologist}"])
    out.append("SPECIMEN")
    out += [f"{chr(65 + i)}. {s}" for i, s in enumerate(specimens)]
    out += ["", "CLINICAL HISTORY", history, "", "GROSS DESCRIPTION", gross, "", "FINAL DIAGNOSIS", *diagnosis, ""]
    if synoptic:
        out.append("SYNOPTIC REPORT (CAP CANCER PROTOCOL)")
        out += [f"{k}: {v}" for k, v in synoptic]
        out.append("")
    if comment:
        out += ["COMMENT", comment, ""]
    out.append(signature(pathologist, signed_at))
    return "\n".join(out)
