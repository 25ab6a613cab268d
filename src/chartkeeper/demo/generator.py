"""Deterministic synthetic population: FHIR R4 resources for the Chartkeeper demo.

``generate(patients, seed)`` first yields the shared resources (the demo hospital and its clinic,
practitioners with NPI identifiers and their roles, locations), then one list of resources per
person. Each person gets an independent random stream derived from ``(seed, index)``, so a person's
record does not depend on how many people come after it, and the same ``(patients, seed)`` always
gives the same resources (ids are UUIDs drawn from that stream). Every reference points to a
resource yielded in the same or an earlier list; every resource passes
``chartkeeper.fhir.validation.validate``. The clinical record is dated up to ``TODAY`` (fixed, not the
clock) over a window of ``HISTORY_YEARS`` years.

What HIM work exists to find, with the fraction drawn per opportunity (so the realised share is
close to it on a few hundred patients; ``generate_truth`` returns exactly what was made):

* ``MISSING_DISCHARGE_SUMMARY`` = 8% of finished inpatient stays have no discharge summary
  (``missing_discharge_summaries``: encounter ids). In-progress stays are not counted.
* ``UNSIGNED`` = 10% of documents are unsigned: ``docStatus`` "preliminary", no authenticator, text
  ending "Not yet signed." (``unsigned_documents``: DocumentReference ids).
* ``DUPLICATE`` = 3% of persons are registered twice: a second Patient with another MRN and one or
  two typos (transposed letters, a nickname, day and month swapped, first and last name swapped),
  carrying one visit of its own and no marker of any kind (``duplicates``: (original, duplicate)
  Patient id pairs; ``duplicate_kinds`` lists the typos of each pair).
* About 6% of persons have a reportable cancer (breast C50.x with laterality, lung C34.x, colon C18.x,
  prostate C61 in males, melanoma C43.x), drawn by age (3% at 30-44, 9% at 45-64, 16% at 65+): a
  diagnostic biopsy with a surgical pathology report, definitive surgery with an operative and a
  resection pathology report in registry language, chemotherapy or hormone therapy, radiation where
  usual, oncology follow-up, and death for some (``cancer_patients``). 0.8% of adults over 40 have a
  basal cell carcinoma of skin (C44.x, not reportable: ``skin_bcc_patients``) and 1% of adults over 30
  have a biopsy negative for malignancy (``benign_biopsy_patients``).
* About 1.5% of adults are in hospital now (an in-progress inpatient stay).
"""

from __future__ import annotations

import base64
import random
import uuid
from collections.abc import Iterator
from datetime import date
from typing import Any

from chartkeeper.demo import notes
from chartkeeper.demo.notes import Chart
from chartkeeper.demo.scenarios import (
    ACUTE,
    ADMISSIONS,
    CANCER_DEATH,
    CANCER_MIX,
    CANCER_SITES,
    HISTOLOGIES,
    OUTPATIENT_PROCS,
    PROCS,
    RADIATION,
    SECONDARY,
    Acute,
    Admission,
    Primary,
    Proc,
)
from chartkeeper.demo.vocab import (
    ADMIT_SOURCE,
    ALLERGENS,
    ALLERGY_CLINICAL,
    ALLERGY_SUBSTITUTES,
    ALLERGY_VER,
    CHILD_SCHEDULE,
    CHRONIC,
    COND_CATEGORY,
    COND_CLINICAL,
    COND_VER,
    CVX,
    DISCHARGE_DISPOSITION,
    DOC_TITLES,
    DOC_TYPES,
    DX,
    ENC_TYPES,
    FAMILY_NAMES,
    FEMALE_NAMES,
    ICD10CM,
    ICD10PCS,
    LAB_PANELS,
    LABS,
    LOINC,
    MALE_NAMES,
    MEDREQ_CATEGORY,
    MEDS,
    MRN_SYSTEM,
    NICKNAMES,
    NPI_SYSTEM,
    NUCC,
    OBS_CATEGORY,
    ORG_TYPE,
    PLACES,
    PRACTITIONER_ROLE,
    RXNORM,
    SNOMED,
    SPECIALTIES,
    STREET_SUFFIXES,
    STREETS,
    UCUM,
    US_CORE_DOC_CATEGORY,
    V2_0203,
    V3_ACTCODE,
    V3_INTERPRETATION,
    V3_PARTICIPATION,
    VACCINES,
    Allergen,
    Dx,
    Lab,
    Med,
)

__all__ = ["TODAY", "generate", "generate_truth"]

TODAY = date(2025, 11, 28)
HISTORY_YEARS = 5
TZ = "-05:00"

MISSING_DISCHARGE_SUMMARY = 0.08
UNSIGNED = 0.10
# Paperwork older than this many days has mostly been completed (late, some of it) by today.
RECENT_DAYS = 120
UNSIGNED_OLD = 0.01
MISSING_DISCHARGE_SUMMARY_OLD = 0.01
LATE_SIGNATURE_OLD = 0.12  # signed 31-60 days after writing: delinquent at the time
LATE_SUMMARY_OLD = 0.08  # discharge summary written 31-50 days after discharge
LATE_HP = 0.04  # history and physical written 26-40 hours after admission
MISSING_OPERATIVE = 0.03
MISSING_PATHOLOGY = 0.03
MISSING_CONSULT = 0.05
SUMMARY_LACKS_ELEMENT = 0.05
VERBAL_ORDER = 0.3  # share of stays with a verbal order
VERBAL_LATE = 0.15  # verbal orders co-signed after 48 hours
SURGICAL = ("http://snomed.info/sct", "387713003", "Surgical procedure")
CONSULTATION = ("http://snomed.info/sct", "11429006", "Consultation")
DOC_TYPE_LOCAL = "https://chartkeeper.org/fhir/CodeSystem/document-type"
SIGNATURE = {"system": "urn:iso-astm:E1762-95:2013", "code": "1.2.840.10065.1.12.1.1", "display": "Author's Signature"}
DUPLICATE = 0.03
CANCER_BY_AGE = ((30, 0.03), (45, 0.09), (65, 0.16))
BCC = 0.008
BENIGN_BIOPSY = 0.01
IN_HOSPITAL_NOW = 0.015

DIAGNOSIS_ROLE = "http://terminology.hl7.org/CodeSystem/diagnosis-role"
_PERSON_STRIDE = 1_000_003

# --------------------------------------------------------------------------------------------------
# small helpers
# --------------------------------------------------------------------------------------------------


def _day(o: int) -> str:
    return date.fromordinal(o).isoformat()


def _dt(o: int, minute: int = 540) -> str:
    """Ordinal day plus minutes after midnight -> FHIR dateTime/instant with the local offset."""
    o += minute // 1440
    minute %= 1440
    return f"{date.fromordinal(o).isoformat()}T{minute // 60:02d}:{minute % 60:02d}:00{TZ}"


def _us(o: int) -> str:
    d = date.fromordinal(o)
    return f"{d.month:02d}/{d.day:02d}/{d.year}"


def _age(birth: int, at: int) -> int:
    b, a = date.fromordinal(birth), date.fromordinal(at)
    return a.year - b.year - ((a.month, a.day) < (b.month, b.day))


def _band(age: int) -> int:
    return 0 if age < 18 else 1 if age < 45 else 2 if age < 65 else 3


def _cc(system: str, code: str, display: str, text: str | None = None) -> dict[str, Any]:
    cc: dict[str, Any] = {"coding": [{"system": system, "code": code, "display": display}]}
    if text:
        cc["text"] = text
    return cc


def _ref(rt: str, rid: str) -> dict[str, str]:
    return {"reference": f"{rt}/{rid}"}


def _npi(base9: int) -> str:
    digits = [int(c) for c in str(base9)]
    total = 24
    for i, d in enumerate(reversed(digits)):
        if i % 2 == 0:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return f"{base9}{(10 - total % 10) % 10}"


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode("ascii")


_DOC_CATEGORY = [_cc(US_CORE_DOC_CATEGORY, "clinical-note", "Clinical Note")]
_ATND = [_cc(V3_PARTICIPATION, "ATND", "attender")]
_CLASS = {
    "IMP": {"system": V3_ACTCODE, "code": "IMP", "display": "inpatient encounter"},
    "AMB": {"system": V3_ACTCODE, "code": "AMB", "display": "ambulatory"},
    "EMER": {"system": V3_ACTCODE, "code": "EMER", "display": "emergency"},
}
# Discharge summary sections the required-elements rule looks for, by element name.
_OMIT = {"DISCHARGE DIAGNOSES": "final_diagnoses", "PROCEDURES": "procedures", "DISPOSITION": "disposition",
         "DISCHARGE MEDICATIONS": "discharge_medications", "FOLLOW-UP": "follow_up"}
_DISPO = {
    "home": "Home", "snf": "Skilled nursing facility", "rehab": "Rehabilitation", "exp": "Expired", "hosp": "Hospice",
}
_ADMIT = {"emd": "From accident/emergency department", "other": "Other", "outp": "From outpatient department"}
_MR = _cc(V2_0203, "MR", "Medical record number")
_LATE_ACTIVE = {"atorvastatin", "clopidogrel", "metoprolol", "omeprazole", "anastrozole", "tamoxifen", "leuprolide"}
_PATH_BENIGN = {
    "appendix": ("Appendix, laparoscopic appendectomy", "Acute suppurative appendicitis with periappendicitis. "
                 "Negative for dysplasia and malignancy."),
    "gallbladder": ("Gallbladder, laparoscopic cholecystectomy", "Acute and chronic cholecystitis with cholelithiasis. "
                    "Negative for dysplasia and malignancy."),
}
_BIOPSY = {"breast": "breast_biopsy", "lung": "lung_biopsy", "colon": "colonoscopy_biopsy", "prostate": "prostate_biopsy",
           "melanoma": "skin_biopsy", "bcc": "skin_biopsy"}
_BIOPSY_SPECIALTY = {"breast": "surgery", "lung": "pulmonology", "colon": "gastroenterology", "prostate": "urology",
                     "melanoma": "dermatology", "bcc": "dermatology"}
_CHEMO = {
    "breast": ("docetaxel", "cyclophosphamide"),
    "colon": ("oxaliplatin", "fluorouracil", "leucovorin"),
    "melanoma": ("pembrolizumab",),
}
_ROLE_NAMES = {"DD": "Discharge diagnosis", "CM": "Comorbidity diagnosis", "billing": "Billing"}
_CHRONIC_BY_KEY = {c.key: c for c in CHRONIC}
_LUNG_CHEMO = {"Adenocarcinoma": ("carboplatin", "pemetrexed"), "Squamous cell carcinoma": ("carboplatin", "paclitaxel"),
               "Small cell carcinoma": ("carboplatin", "etoposide")}


class _Shared:
    """The hospital, its clinic, staff and locations (drawn from the seed alone)."""

    def __init__(self, rng: random.Random, today: date = TODAY) -> None:
        def new_id() -> str:
            return str(uuid.UUID(int=rng.getrandbits(128), version=4))

        self.t0 = today.toordinal()

        self.resources: list[dict[str, Any]] = []
        addr = {"line": ["1200 Medical Center Drive"], "city": "Columbus", "district": "Franklin County", "state": "OH",
                "postalCode": "43215", "country": "US"}
        self.hospital = new_id()
        self.clinic = new_id()
        self.resources.append({
            "resourceType": "Organization", "id": self.hospital, "active": True,
            "identifier": [{"system": NPI_SYSTEM, "value": _npi(100000000 + rng.randrange(99_999_999))}],
            "type": [_cc(ORG_TYPE, "prov", "Healthcare Provider")], "name": "Chartkeeper Demo Hospital",
            "telecom": [{"system": "phone", "value": "(614) 555-0100", "use": "work"}], "address": [addr],
        })
        self.resources.append({
            "resourceType": "Organization", "id": self.clinic, "active": True,
            "identifier": [{"system": NPI_SYSTEM, "value": _npi(100000000 + rng.randrange(99_999_999))}],
            "type": [_cc(ORG_TYPE, "prov", "Healthcare Provider")], "name": "Chartkeeper Demo Primary Care Clinic",
            "telecom": [{"system": "phone", "value": "(614) 555-0200", "use": "work"}],
            "address": [{**addr, "line": ["455 Park Street"]}], "partOf": _ref("Organization", self.hospital),
        })
        self.loc: dict[str, str] = {}
        for key, name, org, code, disp in (
            ("ward", "Demo Hospital Medical-Surgical Unit", self.hospital, "HU", "Hospital unit"),
            ("ed", "Demo Hospital Emergency Department", self.hospital, "ER", "Emergency room"),
            ("or", "Demo Hospital Operating Rooms", self.hospital, "HU", "Hospital unit"),
            ("ld", "Demo Hospital Labor and Delivery", self.hospital, "HU", "Hospital unit"),
            ("clinic", "Demo Primary Care Clinic", self.clinic, "OF", "Outpatient facility"),
            ("cancer", "Demo Hospital Cancer Center", self.hospital, "OF", "Outpatient facility"),
        ):
            lid = new_id()
            self.loc[key] = lid
            self.resources.append({
                "resourceType": "Location", "id": lid, "status": "active", "name": name, "mode": "instance",
                "type": [_cc("http://terminology.hl7.org/CodeSystem/v3-RoleCode", code, disp)],
                "managingOrganization": _ref("Organization", org),
            })
        self.staff: dict[str, list[tuple[str, str]]] = {}  # specialty -> [(id, display name)]
        used: set[tuple[str, str]] = set()
        for spec, nucc, nucc_disp, count, role in SPECIALTIES:
            for _ in range(count):
                sex = rng.choice(("female", "male"))
                while True:
                    given = rng.choice(FEMALE_NAMES if sex == "female" else MALE_NAMES)
                    family = rng.choice(FAMILY_NAMES)
                    if (given, family) not in used:
                        used.add((given, family))
                        break
                pid = new_id()
                suffix = "MD" if role == "doctor" else "RN"
                display = f"{given} {family}, {suffix}"
                hname: dict[str, Any] = {"use": "official", "family": family, "given": [given], "suffix": [suffix]}
                if role == "doctor":
                    hname["prefix"] = ["Dr."]
                self.resources.append({
                    "resourceType": "Practitioner", "id": pid, "active": True,
                    "identifier": [{"system": NPI_SYSTEM, "value": _npi(1_000_000_000 // 10 + rng.randrange(99_999_999))}],
                    "name": [hname], "gender": sex,
                    "telecom": [{"system": "phone", "value": f"(614) 555-{rng.randrange(1000, 9999)}", "use": "work"}],
                })
                self.resources.append({
                    "resourceType": "PractitionerRole", "id": new_id(), "active": True,
                    "practitioner": _ref("Practitioner", pid), "organization": _ref("Organization", self.hospital),
                    "code": [_cc(PRACTITIONER_ROLE, role, "Doctor" if role == "doctor" else "Nurse")],
                    "specialty": [_cc(NUCC, nucc, nucc_disp)],
                })
                self.staff.setdefault(spec, []).append((pid, display))


class _Truth:
    def __init__(self) -> None:
        self.duplicates: list[tuple[str, str]] = []
        self.duplicate_kinds: list[list[str]] = []
        self.cancer_patients: list[str] = []
        self.skin_bcc_patients: list[str] = []
        self.benign_biopsy_patients: list[str] = []
        self.unsigned_documents: list[str] = []
        self.missing_discharge_summaries: list[str] = []
        self.deceased: list[str] = []
        self.late_signatures: list[str] = []  # DocumentReference ids signed after their limit
        self.late_hp: list[str] = []  # Encounter ids
        self.missing_operative_reports: list[str] = []  # Procedure ids
        self.missing_pathology_reports: list[str] = []  # Specimen ids
        self.missing_consult_reports: list[str] = []  # ServiceRequest ids
        self.incomplete_discharge_summaries: list[tuple[str, str]] = []  # (DocumentReference id, element)
        self.verbal_orders: list[str] = []  # DocumentReference ids

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


# --------------------------------------------------------------------------------------------------
# one person
# --------------------------------------------------------------------------------------------------


class _Person:
    def __init__(self, shared: _Shared, truth: _Truth, seed: int, index: int) -> None:
        self.s = shared
        self.t0 = shared.t0
        self.truth = truth
        self.rng = rng = random.Random(seed * _PERSON_STRIDE + index)
        # A second stream for the paperwork (signature times, verbal orders, late and missing documents),
        # so that the clinical story stays what the first stream alone makes it.
        self.hrng = random.Random(seed * _PERSON_STRIDE + index + 7_777_777_777)
        self.index = index
        self.seed = seed
        self.out: list[dict[str, Any]] = []
        self.problems: list[tuple[Dx, str, int]] = []  # (dx, condition id, recorded ordinal)
        self.meds: list[tuple[Med, int, int]] = []  # (med, start, stop) for home medications
        self.surgical: list[str] = []
        # demographics
        self.sex = rng.choice(("female", "male"))
        r = rng.random()
        lo, hi = (0, 17) if r < 0.22 else (18, 44) if r < 0.57 else (45, 64) if r < 0.82 else (65, 96)
        age = rng.randint(lo, hi)
        self.birth = self.t0 - age * 365 - age // 4 - rng.randrange(365)
        self.age_now = _age(self.birth, self.t0)
        self.start = max(self.birth + 1, self.t0 - HISTORY_YEARS * 365)
        self.death = 0  # ordinal of death, 0 = alive
        self.given = rng.choice(FEMALE_NAMES if self.sex == "female" else MALE_NAMES)
        self.middle = rng.choice(FEMALE_NAMES if self.sex == "female" else MALE_NAMES) if rng.random() < 0.6 else ""
        self.family = rng.choice(FAMILY_NAMES)
        self.place = rng.choices(PLACES, weights=[p.weight for p in PLACES])[0]
        street, suffix = rng.choice(STREETS), rng.choice(STREET_SUFFIXES)[0]
        self.line = f"{rng.randint(10, 9899)} {street} {suffix}"
        self.postal = rng.choice(self.place.postal_codes)
        self.phone = f"({self.place.area_code}) {rng.randint(201, 989)}-{rng.randint(1000, 9999)}"
        self.pid = self.new_id()
        self.mrn = self.make_mrn(0)
        self.subject = _ref("Patient", self.pid)
        self.subject_name = f"{self.family}, {self.given}"
        self.subject_mrn = self.mrn
        pcp_spec = "pediatrics" if self.age_now < 18 else rng.choice(("internal", "family"))
        self.pcp = rng.choice(shared.staff[pcp_spec])
        self.allergies: list[tuple[Allergen, str]] = []
        self.lab_state: dict[str, tuple[float, float]] = {}
        self.chronic_keys: set[str] = set()
        self.recorded: dict[str, int] = {}  # chronic key -> day it was put on the problem list
        self.cancer_day = 0  # day of the diagnostic biopsy

    # ---- ids, charts -----------------------------------------------------------------------------

    def new_id(self) -> str:
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))

    def make_mrn(self, k: int) -> str:
        n = (self.index * 2 + k) * 7919 + (self.seed * 104729) % 90_000_000
        return f"{10_000_000 + n % 90_000_000:08d}"

    def staff(self, spec: str) -> tuple[str, str]:
        return self.rng.choice(self.s.staff[spec])

    def chart(self, at: int) -> Chart:
        age = _age(self.birth, at)
        social = "Lives at home with family." if age < 18 else (
            "Current every-day smoker, 1 pack per day. Drinks alcohol occasionally."
            if "smoker" in self.chronic_keys else "Never smoker. Drinks alcohol socially. Lives at home.")
        return Chart(
            name=self.subject_name, mrn=self.subject_mrn, dob=_us(self.birth), age=age, sex=self.sex,
            problems=[d for d, _, o in self.problems if o <= at],
            meds=[m for m, s, e in self.meds if s <= at < e],
            allergies=list(self.allergies), social=social,
            family="Mother with hypertension; father with type 2 diabetes." if self.index % 3 else "Noncontributory.",
            surgical=list(self.surgical),
        )

    # ---- resources -------------------------------------------------------------------------------

    def encounter(self, cls: str, etype: str, start: int, end: int | None, attending: tuple[str, str], loc: str,
                  *, reason: Dx | None = None, minute: int = 540, end_minute: int = 570, org: str | None = None,
                  admit_source: str = "", dispo: str = "", in_progress: bool = False) -> dict[str, Any]:
        enc: dict[str, Any] = {
            "resourceType": "Encounter", "id": self.new_id(), "status": "in-progress" if in_progress else "finished",
            "class": _CLASS[cls], "type": [_cc(SNOMED, *ENC_TYPES[etype])], "subject": self.subject,
            "participant": [{"type": _ATND, "individual": _ref("Practitioner", attending[0])}],
            "period": {"start": _dt(start, minute)},
            "location": [{"location": _ref("Location", self.s.loc[loc])}],
            "serviceProvider": _ref("Organization", org or (self.s.clinic if loc == "clinic" else self.s.hospital)),
        }
        if not in_progress and end is not None:
            enc["period"]["end"] = _dt(end, end_minute)
        if reason is not None:
            enc["reasonCode"] = [_cc(ICD10CM, reason.code, reason.title)]
        if cls == "IMP":
            hosp: dict[str, Any] = {}
            if admit_source:
                hosp["admitSource"] = _cc(ADMIT_SOURCE, admit_source, _ADMIT[admit_source])
            if dispo and not in_progress:
                hosp["dischargeDisposition"] = _cc(DISCHARGE_DISPOSITION, dispo, _DISPO[dispo])
            if hosp:
                enc["hospitalization"] = hosp
        self.out.append(enc)
        return enc

    def condition(self, dx: Dx, enc: dict[str, Any] | None, onset: int, recorded: int, *, category: str,
                  abated: int | None = None, asserter: str | None = None) -> dict[str, Any]:
        status = "resolved" if abated is not None else "active"
        cond: dict[str, Any] = {
            "resourceType": "Condition", "id": self.new_id(),
            "clinicalStatus": _cc(COND_CLINICAL, status, status.capitalize()),
            "verificationStatus": _cc(COND_VER, "confirmed", "Confirmed"),
            "category": [_cc(COND_CATEGORY, category,
                             "Problem List Item" if category == "problem-list-item" else "Encounter Diagnosis")],
            "code": {"coding": [{"system": ICD10CM, "code": dx.code, "display": dx.title}], "text": dx.phrase},
            "subject": self.subject, "onsetDateTime": _day(onset), "recordedDate": _day(recorded),
        }
        if dx.snomed:
            cond["code"]["coding"].append({"system": SNOMED, "code": dx.snomed[0], "display": dx.snomed[1]})
        if abated is not None:
            cond["abatementDateTime"] = _day(abated)
        if enc is not None:
            cond["encounter"] = _ref("Encounter", enc["id"])
        if asserter:
            cond["asserter"] = _ref("Practitioner", asserter)
        self.out.append(cond)
        return cond

    def diagnose(self, enc: dict[str, Any], conds: list[dict[str, Any]], use: str = "DD") -> None:
        diags = enc.setdefault("diagnosis", [])
        for c in conds:
            d: dict[str, Any] = {"condition": _ref("Condition", c["id"]), "rank": len(diags) + 1}
            d["use"] = _cc(DIAGNOSIS_ROLE, use, _ROLE_NAMES[use])
            diags.append(d)

    def med_request(self, med: Med, enc: dict[str, Any], when: int, prescriber: str, *, category: str,
                    status: str, reason: dict[str, Any] | None = None) -> dict[str, Any]:
        code = {"coding": [{"system": RXNORM, "code": med.rxcui, "display": med.display}], "text": med.name}
        dosage: dict[str, Any] = {"text": med.sig, "timing": {"repeat": {
            "frequency": med.frequency, "period": med.period, "periodUnit": med.period_unit}}}
        mr: dict[str, Any] = {
            "resourceType": "MedicationRequest", "id": self.new_id(), "status": status, "intent": "order",
            "category": [_cc(MEDREQ_CATEGORY, category, category.capitalize())],
            "medicationCodeableConcept": code, "subject": self.subject, "encounter": _ref("Encounter", enc["id"]),
            "authoredOn": _dt(when, 600), "requester": _ref("Practitioner", prescriber), "dosageInstruction": [dosage],
        }
        if reason is not None:
            mr["reasonReference"] = [_ref("Condition", reason["id"])]
        self.out.append(mr)
        return mr

    def procedure(self, text: str, enc: dict[str, Any], when: int, performer: str, *, pcs: tuple[tuple[str, str], ...] = (),
                  snomed: tuple[str, str] | None = None, reason: dict[str, Any] | None = None,
                  until: int | None = None, surgical: bool = False) -> dict[str, Any]:
        coding = [{"system": ICD10PCS, "code": c, "display": t} for c, t in pcs]
        if snomed:
            coding.append({"system": SNOMED, "code": snomed[0], "display": snomed[1]})
        code: dict[str, Any] = {"text": text}
        if coding:
            code["coding"] = coding
        pr: dict[str, Any] = {
            "resourceType": "Procedure", "id": self.new_id(), "status": "completed", "code": code,
            "subject": self.subject, "encounter": _ref("Encounter", enc["id"]),
            "performer": [{"actor": _ref("Practitioner", performer)}],
        }
        if surgical:
            pr["category"] = _cc(SURGICAL[0], SURGICAL[1], SURGICAL[2])
        if until is not None:
            pr["performedPeriod"] = {"start": _day(when), "end": _day(until)}
        else:
            pr["performedDateTime"] = _dt(when, 480 + self.rng.randrange(480))
        if reason is not None:
            pr["reasonReference"] = [_ref("Condition", reason["id"])]
        self.out.append(pr)
        return pr

    def lab(self, key: str, enc: dict[str, Any], when: int, value: float | None = None) -> tuple[str, str]:
        lab: Lab = LABS[key]
        if value is None:
            value = self.lab_value(key, when)
        value = round(value, lab.decimals) if lab.decimals else float(round(value))
        low, high = (lab.low_m, lab.high_m) if self.sex == "male" else (lab.low_f, lab.high_f)
        q = {"unit": lab.unit, "system": UCUM, "code": lab.unit}
        rr: dict[str, Any] = {}
        if low is not None:
            rr["low"] = {"value": low, **q}
        if high is not None:
            rr["high"] = {"value": high, **q}
        flag = "H" if high is not None and value > high else "L" if low is not None and value < low else "N"
        obs = {
            "resourceType": "Observation", "id": self.new_id(), "status": "final",
            "category": [_cc(OBS_CATEGORY, "laboratory", "Laboratory")],
            "code": {"coding": [{"system": LOINC, "code": lab.loinc, "display": lab.display}], "text": lab.short},
            "subject": self.subject, "encounter": _ref("Encounter", enc["id"]),
            "effectiveDateTime": _dt(when, 480), "issued": _dt(when, 600),
            "valueQuantity": {"value": value, **q},
            "interpretation": [_cc(V3_INTERPRETATION, flag, {"H": "High", "L": "Low", "N": "Normal"}[flag])],
            "referenceRange": [rr],
        }
        self.out.append(obs)
        shown = f"{value:.{lab.decimals}f}"
        return lab.short, shown + (f" ({flag})" if flag != "N" else "")

    def labs(self, keys: list[str], enc: dict[str, Any], when: int, overrides: dict[str, float] | None = None
             ) -> list[tuple[str, str]]:
        seen: list[str] = []
        for k in keys:
            for lk in LAB_PANELS.get(k, (k,)):
                if lk not in seen:
                    seen.append(lk)
        for lk in overrides or {}:
            if lk not in seen:
                seen.append(lk)
        return [self.lab(lk, enc, when, (overrides or {}).get(lk)) for lk in seen]

    def lab_value(self, key: str, when: int) -> float:
        st = self.lab_state.get(key)
        if st is None:
            st = self.lab_state[key] = self.lab_baseline(key)
        base, slope = st
        years = (when - self.start) / 365.25
        lab = LABS[key]
        noise = (self.rng.random() - 0.5) * 0.06 * abs(base)
        v = base + slope * years + noise
        floor = (lab.low_f or 0) * 0.3 if lab.low_f else 0.01
        return max(v, floor, 10 ** -lab.decimals)

    def lab_baseline(self, key: str) -> tuple[float, float]:
        r = self.rng.uniform
        c = self.chronic_keys
        special = {
            "a1c": ((7.0, 8.8), 0.15) if "dm2" in c else ((4.8, 5.6), 0.03),
            "glucose": ((135, 190), 4.0) if "dm2" in c else ((78, 98), 0.5),
            "creatinine": ((1.3, 1.7), 0.06) if "ckd" in c else ((0.7, 1.0), 0.0),
            "egfr": ((46, 58), -1.5) if "ckd" in c else ((75, 105), -0.8),
            "bun": ((22, 32), 0.8) if "ckd" in c else ((9, 18), 0.0),
            "ldl": ((130, 175), -8.0) if "hld" in c else ((70, 99), 0.5),
            "cholesterol": ((215, 260), -8.0) if "hld" in c else ((150, 195), 0.5),
            "triglycerides": ((160, 240), -5.0) if "hld" in c or "dm2" in c else ((70, 140), 1.0),
            "tsh": ((5.0, 8.0), -0.8) if "hypothyroid" in c else ((0.8, 3.2), 0.0),
            "bnp": ((180, 420), 15.0) if "chf" in c else ((20, 80), 0.0),
            "hemoglobin": ((9.3, 10.8), 0.3) if "ida" in c else ((12.2, 14.8) if self.sex == "female" else (13.6, 16.0), 0.0),
            "psa": ((0.4, 2.8), 0.15),
            "potassium": ((3.7, 4.8), 0.0), "sodium": ((137, 143), 0.0), "hdl": ((42, 70), 0.0),
            "wbc": ((4.5, 8.5), 0.0), "platelets": ((180, 350), 0.0), "lactate": ((0.7, 1.6), 0.0),
            "troponin": ((0.0, 0.02), 0.0), "alt": ((12, 38), 0.0),
        }
        (lo, hi), slope = special.get(key, ((1.0, 2.0), 0.0))
        return r(lo, hi), slope

    def hid(self) -> str:
        """An id from the paperwork stream."""
        return str(uuid.UUID(int=self.hrng.getrandbits(128), version=4))

    def recent(self, day: int) -> bool:
        return self.t0 - day <= RECENT_DAYS

    def document(self, kind: str, enc: dict[str, Any], when: int, author: tuple[str, str], render: Any,
                 minute: int = 900, *, sign_within: tuple[int, int] | None = None, late_delay: tuple[int, int] | None = None,
                 late_share: float | None = None) -> dict[str, Any]:
        """``render(signed_at)`` returns the text. A recent document is left unsigned one time in ten; an
        older one was signed, a Provenance records when (some late). ``sign_within`` / ``late_delay``
        (minutes) and ``late_share`` change the signing delay (verbal orders)."""
        unsigned = self.rng.random() < (UNSIGNED if self.recent(when) else UNSIGNED_OLD)
        h = self.hrng
        share = late_share if late_share is not None else (0.0 if self.recent(when) else LATE_SIGNATURE_OLD)
        late = h.random() < share
        lo, hi = (late_delay or (31 * 1440, 60 * 1440)) if late else (sign_within or (20, 36 * 60))
        signed_abs = when * 1440 + minute + h.randint(lo, hi)
        if signed_abs // 1440 >= self.t0:
            unsigned = True  # it would be signed after today: not yet
        signed_at = None
        if not unsigned:
            sd, sm = divmod(signed_abs, 1440)
            signed_at = f"{_us(sd)} {sm // 60:02d}:{sm % 60:02d}"
        text = render(signed_at)
        if kind == "verbal":
            type_cc = _cc(DOC_TYPE_LOCAL, "verbal-order", "Verbal order", DOC_TITLES[kind])
        else:
            code, display = DOC_TYPES[kind]
            type_cc = _cc(LOINC, code, display, DOC_TITLES[kind])
        doc: dict[str, Any] = {
            "resourceType": "DocumentReference", "id": self.new_id(), "status": "current",
            "docStatus": "preliminary" if unsigned else "final",
            "type": type_cc, "category": _DOC_CATEGORY,
            "subject": self.subject, "date": _dt(when, minute), "author": [_ref("Practitioner", author[0])],
            "description": DOC_TITLES[kind],
            "content": [{"attachment": {"contentType": "text/plain", "data": _b64(text), "title": DOC_TITLES[kind],
                                        "creation": _dt(when, minute)}}],
            "context": {"encounter": [_ref("Encounter", enc["id"])], "period": dict(enc["period"])},
        }
        if unsigned:
            self.truth.unsigned_documents.append(doc["id"])
        else:
            doc["authenticator"] = _ref("Practitioner", author[0])
        self.out.append(doc)
        if not unsigned:
            sd, sm = divmod(signed_abs, 1440)
            if late:
                self.truth.late_signatures.append(doc["id"])
            self.out.append({
                "resourceType": "Provenance", "id": self.hid(),
                "target": [_ref("DocumentReference", doc["id"]), self.subject], "recorded": _dt(sd, sm),
                "activity": _cc("http://terminology.hl7.org/CodeSystem/v3-DocumentCompletion", "AU", "authenticated"),
                "agent": [{"who": _ref("Practitioner", author[0])}],
                "signature": [{"type": [SIGNATURE], "when": _dt(sd, sm), "who": _ref("Practitioner", author[0])}],
            })
        return doc

    def summary_paperwork(self, end: int) -> tuple[int, str]:
        """(the day the discharge summary is written, the section it lacks or "")."""
        h = self.hrng
        day = end
        if not self.recent(end) and h.random() < LATE_SUMMARY_OLD:
            day = min(end + h.randint(31, 50), self.t0)
        omit = h.choice(tuple(_OMIT)) if h.random() < SUMMARY_LACKS_ELEMENT else ""
        return day, omit

    def vitals(self, at: int, sick: bool = False) -> dict[str, float]:
        r = self.rng
        age = _age(self.birth, at)
        htn = "htn" in self.chronic_keys
        v = {"sbp": r.randint(128, 152) if htn else r.randint(100 if age < 12 else 108, 128),
             "hr": r.randint(88, 112) if sick else r.randint(62, 88), "temp": round(r.uniform(36.4, 37.1), 1),
             "rr": r.randint(18, 24) if sick else r.randint(12, 18), "spo2": r.randint(93, 99)}
        v["dbp"] = r.randint(72, 92) if htn else r.randint(62, 80)
        if age >= 2:
            v["weight"] = round(min(15 + age * 3.2, 58.0 + (16 if self.sex == "male" else 6)) + r.uniform(-5, 25), 1)
        return v

    def swap_for_allergy(self, key: str) -> str:
        for a, _ in self.allergies:
            sub = ALLERGY_SUBSTITUTES.get(a.key, {})
            if key in sub:
                return sub[key]
        return key

    # ---- the record ------------------------------------------------------------------------------

    def build(self) -> list[dict[str, Any]]:
        rng = self.rng
        patient = self.patient_resource(self.pid, self.mrn, self.given, self.middle, self.family, _day(self.birth))
        self.out.append(patient)
        self.pick_allergies()
        chronic = self.pick_chronic()
        cancer_site = self.pick_cancer()
        bcc = not cancer_site and self.age_now >= 40 and rng.random() < BCC
        benign = not cancer_site and not bcc and self.age_now >= 30 and rng.random() < BENIGN_BIOPSY
        if (cancer_site or bcc) and self.t0 - self.start > 200:
            self.cancer_day = rng.randrange(self.start, self.t0 - 120)
            if cancer_site and rng.random() < CANCER_DEATH[cancer_site]:
                d = self.cancer_day + rng.randint(200, 900)
                if d < self.t0:
                    self.death = d
        if not self.death and self.age_now >= 80 and rng.random() < 0.05:
            self.death = self.t0 - rng.randrange(30, 500)
        last = self.death or self.t0

        checkups = self.schedule_checkups(last)
        self.allergy_resources(checkups[0] if checkups else self.start)
        self.chronic_story(chronic, checkups)
        for at in checkups:
            self.checkup(at)
        if self.cancer_day:
            self.cancer_story(cancer_site or "bcc", last)
        elif benign:
            self.benign_biopsy(last)
        acute_visits: list[tuple[int, Acute]] = []
        n_acute = rng.choices((0, 1, 2, 3), weights=(3, 4, 2, 1))[0]
        for _ in range(n_acute):
            a = self.pick_acute()
            at = rng.randrange(self.start, last) if last > self.start else self.start
            if a is not None:
                acute_visits.append((at, a))
        dup = rng.random() < DUPLICATE
        if dup and not acute_visits:
            a = self.pick_acute()
            if a is not None and last > self.start + 10:
                acute_visits.append((rng.randrange(self.start + 1, last), a))
        acute_visits.sort(key=lambda t: t[0])
        for i, (at, a) in enumerate(acute_visits):
            if dup and i == len(acute_visits) - 1:
                self.with_duplicate(lambda at=at, a=a: self.acute_visit(at, a))
            else:
                self.acute_visit(at, a)
        band = _band(self.age_now)
        n_adm = 0
        if rng.random() < (0.03, 0.08, 0.15, 0.30)[band]:
            n_adm = 2 if rng.random() < 0.2 else 1
        for _ in range(n_adm):
            adm = self.pick_admission()
            if adm is not None and last - 10 > self.start:
                self.admission(adm, rng.randrange(self.start, last - 10))
        if not self.death and self.age_now >= 18 and rng.random() < IN_HOSPITAL_NOW:
            adm = self.pick_admission(medical_only=True)
            if adm is not None:
                self.admission(adm, self.t0 - rng.randint(0, 3), in_progress=True)
        if self.death:
            patient["deceasedDateTime"] = _dt(self.death, rng.randrange(1440))
            self.truth.deceased.append(self.pid)
            for res in self.out:
                if res["resourceType"] == "MedicationRequest" and res["status"] == "active":
                    res["status"] = "stopped"
        return self.out

    def patient_resource(self, pid: str, mrn: str, given: str, middle: str, family: str, birth: str) -> dict[str, Any]:
        gv = [given, middle] if middle else [given]
        return {
            "resourceType": "Patient", "id": pid, "active": True,
            "identifier": [{"use": "usual", "type": _MR, "system": MRN_SYSTEM, "value": mrn}],
            "name": [{"use": "official", "family": family, "given": gv}],
            "telecom": [{"system": "phone", "value": self.phone, "use": "home"}],
            "gender": self.sex, "birthDate": birth,
            "address": [{"use": "home", "line": [self.line], "city": self.place.city, "district": self.place.county,
                         "state": self.place.state, "postalCode": self.postal, "country": "US"}],
            "managingOrganization": _ref("Organization", self.s.hospital),
        }

    def with_duplicate(self, visit: Any) -> None:
        """Register the person a second time (typos, another MRN) and file one visit under that registration."""
        rng = self.rng
        given, family, middle, birth = self.given, self.family, self.middle, date.fromordinal(self.birth)
        kinds: list[str] = []
        options = ["transposed", "nickname", "swapped_day_month", "swapped_names"]
        rng.shuffle(options)
        wanted = 2 if rng.random() < 0.3 else 1
        for kind in options:
            if len(kinds) == wanted:
                break
            if kind == "nickname" and given in NICKNAMES:
                given = NICKNAMES[given]
            elif kind == "swapped_day_month" and birth.day <= 12 and birth.day != birth.month:
                birth = date(birth.year, birth.day, birth.month)
            elif kind == "swapped_names" and family != given:
                given, family = family, given
            elif kind == "transposed" and len(family) >= 4:
                i = rng.randrange(1, len(family) - 2)
                if family[i] == family[i + 1]:
                    continue
                family = family[:i] + family[i + 1] + family[i] + family[i + 2:]
            else:
                continue
            kinds.append(kind)
        if not kinds:  # fall back to a transposition in the given name
            i = 1 if given[1] != given[2] else 0
            given = given[:i] + given[i + 1] + given[i] + given[i + 2:]
            kinds.append("transposed")
        dup_id = self.new_id()
        dup_mrn = self.make_mrn(1)
        self.out.append(self.patient_resource(dup_id, dup_mrn, given, "" if rng.random() < 0.5 else middle, family,
                                              birth.isoformat()))
        self.truth.duplicates.append((self.pid, dup_id))
        self.truth.duplicate_kinds.append(kinds)
        saved = self.subject, self.subject_name, self.subject_mrn
        self.subject, self.subject_name, self.subject_mrn = _ref("Patient", dup_id), f"{family}, {given}", dup_mrn
        try:
            visit()
        finally:
            self.subject, self.subject_name, self.subject_mrn = saved

    # ---- choices ---------------------------------------------------------------------------------

    def pick_allergies(self) -> None:
        rng = self.rng
        n = rng.choices((0, 1, 2), weights=(74, 20, 6))[0]
        weights = [a.weight for a in ALLERGENS]
        for _ in range(n):
            a = rng.choices(ALLERGENS, weights=weights)[0]
            if all(a.key != b.key for b, _ in self.allergies):
                self.allergies.append((a, a.reactions[rng.randrange(len(a.reactions))][1].lower()))

    def pick_chronic(self) -> list[tuple[str, int]]:
        """Chronic conditions with their onset ordinal."""
        rng = self.rng
        band = _band(self.age_now)
        picked = []
        for c in CHRONIC:
            if c.sex and c.sex != self.sex or not c.min_age <= self.age_now <= c.max_age:
                continue
            if c.key == "copd" and "smoker" not in self.chronic_keys and rng.random() < 0.5:
                continue
            if rng.random() < c.prevalence[band]:
                onset_age = rng.randint(c.min_age, self.age_now)
                onset = max(self.birth + onset_age * 365 + rng.randrange(365), self.birth + 1)
                picked.append((c.key, min(onset, self.t0 - 1)))
                self.chronic_keys.add(c.key)
        return picked

    def pick_cancer(self) -> str:
        rng = self.rng
        p = 0.0
        for age, prob in CANCER_BY_AGE:
            if self.age_now >= age:
                p = prob
        if rng.random() >= p:
            return ""
        mix = [(s, w) for s, w in CANCER_MIX[self.sex] if s != "bcc"]
        return rng.choices([s for s, _ in mix], weights=[w for _, w in mix])[0]

    def pick_acute(self) -> Acute | None:
        band = _band(self.age_now)
        ok = [a for a in ACUTE if (not a.sex or a.sex == self.sex) and self.age_now >= a.min_age and a.weights[band] > 0]
        if not ok:
            return None
        return self.rng.choices(ok, weights=[a.weights[band] for a in ok])[0]

    def pick_admission(self, medical_only: bool = False) -> Admission | None:
        band = _band(self.age_now)
        ok = [a for a in ADMISSIONS if a.weights[band] > 0 and (not a.sex or a.sex == self.sex)
              and a.min_age <= self.age_now - 1 and self.age_now <= a.max_age
              and (not a.requires or a.requires in self.chronic_keys) and not (medical_only and a.procedure)]
        if not ok:
            return None
        return self.rng.choices(ok, weights=[a.weights[band] for a in ok])[0]

    # ---- outpatient --------------------------------------------------------------------------------

    def schedule_checkups(self, last: int) -> list[int]:
        rng = self.rng
        days: set[int] = set()
        for months, _ in CHILD_SCHEDULE:
            d = self.birth + int(months * 30.44) + (3 if months else 1)
            if self.start <= d < last:
                days.add(d)
        year_start = self.start
        while year_start < last:
            if rng.random() < (0.95 if self.chronic_keys else 0.7):
                d = year_start + rng.randrange(365)
                if d < last:
                    days.add(d)
            year_start += 365
        return sorted(days)

    def allergy_resources(self, when: int) -> None:
        for a, reaction in self.allergies:
            manifestation = next((r for r in a.reactions if r[1].lower() == reaction), a.reactions[0])
            self.out.append({
                "resourceType": "AllergyIntolerance", "id": self.new_id(),
                "clinicalStatus": _cc(ALLERGY_CLINICAL, "active", "Active"),
                "verificationStatus": _cc(ALLERGY_VER, "confirmed", "Confirmed"),
                "type": "allergy", "category": [a.category],
                "criticality": "high" if manifestation[1] == "Anaphylaxis" else "low",
                "code": _cc(a.system, a.code, a.display, a.text), "patient": self.subject,
                "recordedDate": _dt(when, 560), "recorder": _ref("Practitioner", self.pcp[0]),
                "reaction": [{"manifestation": [_cc(SNOMED, *manifestation)]}],
            })

    def chronic_story(self, chronic: list[tuple[str, int]], checkups: list[int]) -> None:
        """Record each chronic condition at the first checkup on or after its onset, with its medications."""
        keys = {k for k, _ in chronic}
        self._chronic_pending: dict[int, list[tuple[Dx, int, list[str], str]]] = {}
        for key, onset in chronic:
            c = _CHRONIC_BY_KEY[key]
            code = c.code
            if key == "htn":
                code = "I13.0" if {"chf", "ckd"} <= keys else "I11.0" if "chf" in keys else "I12.9" if "ckd" in keys else "I10"
            elif key == "dm2" and "ckd" in keys:
                code = "E11.22"
            elif key == "oa_knee":
                code = self.rng.choice(("M17.11", "M17.12"))
            elif key == "asthma" and self.age_now < 18:
                code = "J45.20"
            at = next((d for d in checkups if d >= onset), None)
            if at is None:
                continue
            meds = list(self.rng.sample(c.meds, min(c.n_meds, len(c.meds)))) if c.meds else []
            meds = [m for m in (self.swap_for_allergy(m) for m in meds) if m]
            self._chronic_pending.setdefault(at, []).append((DX[code], onset, meds, key))

    def checkup(self, at: int) -> None:
        rng = self.rng
        age = _age(self.birth, at)
        reason = DX["Z00.129" if age < 18 else "Z00.00"]
        enc = self.encounter("AMB", "checkup", at, at, self.pcp, "clinic", reason=reason, minute=540 + rng.randrange(16) * 30)
        new = self._chronic_pending.get(at, [])
        assessment: list[tuple[str, str]] = []
        for dx, onset, med_keys, key in new:
            self.recorded[key] = at
            cond = self.condition(dx, enc, onset, at, category="problem-list-item", asserter=self.pcp[0])
            self.problems.append((dx, cond["id"], at))
            started = []
            for mk in med_keys:
                med = MEDS[mk]
                if any(m.key == mk for m, _, _ in self.meds):
                    continue
                self.med_request(med, enc, at, self.pcp[0], category="community", status="active", reason=cond)
                self.meds.append((med, at, 10**7))
                started.append(med.short)
            plan = "Newly diagnosed. " if onset > self.start else "Established problem, new to this practice. "
            plan += f"Start {', '.join(started)}." if started else "Lifestyle counseling."
            assessment.append((dx.phrase, plan))
        new_codes = {dx.code for dx, _, _, _ in new}
        for dx, _, o in self.problems:
            if o < at and dx.code not in new_codes:
                assessment.append((dx.phrase, "Stable. Continue current management."))
        lab_keys: list[str] = []
        for key, rec in self.recorded.items():
            if rec <= at:
                lab_keys.extend(_CHRONIC_BY_KEY[key].labs)
        if age >= 40 and rng.random() < 0.3:
            lab_keys.append("lipid")
        if self.sex == "male" and age >= 55 and rng.random() < 0.3:
            lab_keys.append("psa")
        results = self.labs(lab_keys, enc, at) if lab_keys else []
        for cvx_key in self.vaccines_due(at, age):
            cvx, disp = VACCINES[cvx_key]
            self.out.append({
                "resourceType": "Immunization", "id": self.new_id(), "status": "completed",
                "vaccineCode": _cc(CVX, cvx, disp), "patient": self.subject, "encounter": _ref("Encounter", enc["id"]),
                "occurrenceDateTime": _dt(at, 600), "primarySource": True,
                "lotNumber": f"{chr(65 + rng.randrange(26))}{rng.randrange(10000, 99999)}",
                "performer": [{"actor": _ref("Practitioner", self.pcp[0])}],
            })
            assessment.append(("Immunizations", f"{disp} given today."))
        assessment.insert(0, (reason.phrase, "Age-appropriate screening and counseling reviewed."))
        chart = self.chart(at)
        vit = self.vitals(at)
        subjective = (f"{chart.intro()} here for a routine {'well-child' if age < 18 else 'annual'} visit. "
                      "Denies chest pain, shortness of breath, fevers or weight loss.")
        self.document("progress", enc, at, self.pcp, lambda s: notes.office_note(
            chart, date=_us(at), author=self.pcp[1], visit=reason.phrase, subjective=subjective, vitals=vit, labs=results,
            assessment=assessment, signed_at=s), minute=1020)

    def vaccines_due(self, at: int, age: int) -> list[str]:
        months = (at - self.birth) / 30.44
        out: list[str] = []
        for m, vax in CHILD_SCHEDULE:
            if abs(months - m) < 0.5 and age < 18:
                out.extend(v for v in vax if v not in out)
        if age >= 1 and date.fromordinal(at).month in (9, 10, 11, 12, 1) and self.rng.random() < 0.6:
            out.append("flu_quad")
        if age >= 50 and self.rng.random() < 0.08:
            out.append("zoster")
        if age >= 65 and self.rng.random() < 0.08:
            out.append("ppsv23")
        if age >= 19 and self.rng.random() < 0.05:
            out.append("td")
        return out

    def acute_visit(self, at: int, a: Acute) -> None:
        rng = self.rng
        dx = DX[a.code]
        if a.emergency:
            doc = self.staff("emergency")
            minute = rng.randrange(1440)
            enc = self.encounter("EMER", "emergency", at, at, doc, "ed", minute=minute,
                                 end_minute=minute + 150 + rng.randrange(200), org=self.s.hospital)
        else:
            doc = self.pcp
            enc = self.encounter("AMB", "symptom", at, at, doc, "clinic", minute=480 + rng.randrange(18) * 30)
            enc["period"]["end"] = _dt(at, 540 + 18 * 30)
        cond = self.condition(dx, enc, at - rng.randint(1, 4), at, category="encounter-diagnosis",
                              abated=min(at + rng.randint(5, 21), self.t0 - 1) if at < self.t0 - 1 else None, asserter=doc[0])
        self.diagnose(enc, [cond], "billing")
        started: list[str] = []
        for mk in a.meds:
            mk = self.swap_for_allergy(mk)
            if mk:
                med = MEDS[mk]
                self.med_request(med, enc, at, doc[0], category="outpatient" if not a.emergency else "community",
                                 status="completed", reason=cond)
                started.append(med.short)
        results = self.labs(list(a.labs), enc, at) if a.labs else []
        imaging = ""
        if a.imaging:
            study, impression = a.imaging
            rad = self.staff("radiology")
            imaging = f"{study}: {impression}"
            self.document("radiology", enc, at, rad, lambda s: notes.radiology_report(
                self.chart(at), date=_us(at), radiologist=rad[1], study=study, indication=a.complaint + ".",
                findings=impression, impression=impression, signed_at=s), minute=enc_minute(enc) + 60)
        if a.key == "laceration":
            text, snomed = OUTPATIENT_PROCS["laceration_repair"]
            self.procedure(text, enc, at, doc[0], snomed=snomed, reason=cond)
        chart = self.chart(at)
        vit = self.vitals(at, sick=True)
        plan = a.plan + (f" Prescribed {', '.join(started)}." if started else "")
        if a.emergency:
            self.document("ed", enc, at, doc, lambda s: notes.ed_note(
                chart, date=_us(at), author=doc[1], cc=a.complaint, hpi=a.hpi, negatives=a.negatives, exam=a.exam, vitals=vit,
                labs=results, imaging=imaging, impression=dx.phrase, plan=plan,
                disposition="Discharged home in stable condition.", signed_at=s), minute=enc_minute(enc) + 200)
        else:
            subj = f"{chart.intro()} {a.hpi}. {a.negatives}"
            self.document("progress", enc, at, doc, lambda s: notes.office_note(
                chart, date=_us(at), author=doc[1], visit=a.complaint, subjective=subj, vitals=vit, labs=results,
                assessment=[(dx.phrase, plan)], signed_at=s), minute=1020)

    # ---- inpatient ---------------------------------------------------------------------------------

    def admission(self, a: Admission, start: int, in_progress: bool = False) -> None:
        rng = self.rng
        los = rng.randint(*a.los)
        if in_progress:
            end = self.t0
        else:
            end = start + los
            if end >= (self.death or self.t0):
                return
        attending = self.staff(a.service)
        dispo = "snf" if a.key.startswith("hip_fracture") else "rehab" if a.key == "stroke" else "home"
        minute = rng.randrange(1440)
        enc = self.encounter("IMP", "surgical_admission" if a.procedure and a.service != "internal" else "admission",
                             start, end, attending, "ld" if a.key == "delivery" else "ward", minute=minute,
                             end_minute=600 + rng.randrange(360), admit_source=a.admit_source, dispo=dispo,
                             in_progress=in_progress)
        principal = DX[a.principal]
        abated = None if in_progress else end
        conds = [self.condition(principal, enc, start, start, category="encounter-diagnosis", abated=abated,
                                asserter=attending[0])]
        for code in a.extra:
            conds.append(self.condition(DX[code], enc, start, start, category="encounter-diagnosis", abated=abated,
                                        asserter=attending[0]))
        overrides = {k: rng.uniform(*r) for k, r in (a.labs or {}).items()}
        sec_key = rng.choice(tuple(SECONDARY)) if rng.random() < 0.2 and a.key != "delivery" else ""
        if sec_key:
            code, lab_key, rng_ = SECONDARY[sec_key]
            overrides[lab_key] = rng.uniform(*rng_)
            conds.append(self.condition(DX[code], enc, start, start, category="encounter-diagnosis", abated=abated,
                                        asserter=attending[0]))
        self.diagnose(enc, conds, "DD")
        comorbid = [(dx, cid) for dx, cid, o in self.problems if o <= start]
        for _dx, cid in comorbid:
            enc["diagnosis"].append({"condition": _ref("Condition", cid), "rank": len(enc["diagnosis"]) + 1,
                                     "use": _cc(DIAGNOSIS_ROLE, "CM", "Comorbidity diagnosis")})
        chart = self.chart(start)
        lab_keys = ["bmp", "cbc"] if a.key != "delivery" else ["cbc"]
        results = self.labs(lab_keys, enc, start, overrides)
        inpatient_meds = []
        for mk in a.meds:
            mk = self.swap_for_allergy(mk)
            if mk:
                inpatient_meds.append(MEDS[mk])
                self.med_request(MEDS[mk], enc, start, attending[0], category="inpatient",
                                 status="active" if in_progress else "completed", reason=conds[0])
        abx = ", ".join(m.name.split(" ")[0].lower() for m in inpatient_meds if m.route == "intravenous"
                        and m.key not in ("sodium_chloride", "heparin_drip", "morphine", "ondansetron")) or "antibiotics"
        fmt = {"d": rng.randint(2, 5), "abx": abx, "trop": f"{overrides.get('troponin', 2.1):.2f}",
               "hgb": f"{overrides.get('hemoglobin', 7.0):.1f}"}
        hpi = a.hpi.format(**fmt)
        course = a.course.format(**fmt)
        vit = self.vitals(start, sick=True)
        imaging = ""
        if a.imaging:
            study, impression = a.imaging
            rad = self.staff("radiology")
            imaging = f"{study}: {impression}"
            self.document("radiology", enc, start, rad, lambda s: notes.radiology_report(
                chart, date=_us(start), radiologist=rad[1], study=study, indication=a.cc + ".", findings=impression,
                impression=impression, signed_at=s), minute=minute + 90)
        working = f"{a.uncertain.capitalize()} {principal.phrase.lower()}" if a.uncertain else principal.phrase
        assessment = [(working, a.plan)] + [(DX[c].phrase, "Monitor and treat.") for c in a.extra]
        assessment += [(dx.phrase, "Continue home regimen.") for dx, _ in comorbid]
        hp_minute = minute + 180
        if self.hrng.random() < LATE_HP:
            hp_minute = minute + self.hrng.randint(26 * 60, 40 * 60)
            self.truth.late_hp.append(enc["id"])
        self.document("hp", enc, start, attending, lambda s: notes.history_and_physical(
            chart, admitted=_us(start), attending=attending[1], cc=a.cc, hpi=hpi, negatives=a.negatives, exam=a.exam,
            vitals=vit, labs=results, imaging=imaging, assessment=assessment, signed_at=s), minute=hp_minute)
        if inpatient_meds and self.hrng.random() < VERBAL_ORDER:
            med = inpatient_meds[0]
            vo_minute = minute + self.hrng.randint(60, 600)
            vo = self.document("verbal", enc, start, attending, lambda s: "\n".join([
                "VERBAL ORDER", f"Patient: {chart.name}    MRN: {chart.mrn}", f"Ordering physician: {attending[1]}", "",
                f"Order: {med.name}, {med.sig}.", "Order read back to and verified with the ordering physician by the "
                "receiving nurse.", "", notes.signature(attending[1], s)]), minute=vo_minute,
                sign_within=(120, 40 * 60), late_delay=(49 * 60, 96 * 60), late_share=VERBAL_LATE)
            self.truth.verbal_orders.append(vo["id"])
        procedures: list[tuple[str, str]] = []
        if a.procedure:
            p = PROCS[a.procedure]
            self.operation(p, enc, start + (1 if a.los[0] > 1 else 0), principal, principal, conds[0])
            procedures.append((p.text, _us(start + (1 if a.los[0] > 1 else 0))))
        if a.consult:
            cons = self.staff(a.consult)
            order: dict[str, Any] = {
                "resourceType": "ServiceRequest", "id": self.hid(), "status": "completed", "intent": "order",
                "category": [_cc(CONSULTATION[0], CONSULTATION[1], CONSULTATION[2])],
                "code": {"text": f"{a.consult.capitalize()} consultation"}, "subject": self.subject,
                "encounter": _ref("Encounter", enc["id"]), "authoredOn": _dt(start, minute + 200),
                "requester": _ref("Practitioner", attending[0]), "performer": [_ref("Practitioner", cons[0])],
                "reasonCode": [{"text": principal.phrase}],
            }
            self.out.append(order)
        if a.consult and self.recent(start) and self.hrng.random() < MISSING_CONSULT:
            self.truth.missing_consult_reports.append(order["id"])
        elif a.consult:
            self.document("consult", enc, start + 1 if not in_progress else start, cons, lambda s: notes.consult_note(
                chart, date=_us(start + 1), consultant=cons[1], specialty=a.consult.capitalize(), requested_by=attending[1],
                reason=principal.phrase, impression=principal.phrase, recommendations=a.plan, signed_at=s))
        days = (end - start) if not in_progress else max(self.t0 - start, 0)
        for day in range(1, min(days, 3) + 1):
            if start + day > self.t0:
                break
            d_ = start + day
            day_labs = self.labs(["bmp"], enc, d_) if day == 1 else []
            vit_d = self.vitals(d_)
            plan_d = [(principal.phrase, "Improving. " + a.plan)]
            self.document("progress", enc, d_, attending, lambda s, d_=d_, day=day, day_labs=day_labs, vit_d=vit_d, plan_d=plan_d:
                          notes.progress_note(chart, date=_us(d_), author=attending[1], day=day + 1,
                                              subjective="Feels better than yesterday. Denies chest pain or new complaints.",
                                              vitals=vit_d, labs=day_labs, assessment=plan_d, signed_at=s), minute=600)
        if in_progress:
            return
        new_meds = []
        for mk in a.discharge_meds:
            mk = self.swap_for_allergy(mk)
            if mk and not any(m.key == mk for m, s_, e_ in self.meds if s_ <= start < e_):
                med = MEDS[mk]
                new_meds.append(med)
                keep = mk in _LATE_ACTIVE
                self.med_request(med, enc, end, attending[0], category="discharge", status="active" if keep else "completed",
                                 reason=conds[0])
                if keep:
                    self.meds.append((med, end, 10**7))
        stopped = [m for m, s_, e_ in self.meds if m.key == "naproxen" and s_ <= start < e_] if a.key == "gi_bleed" else []
        if rng.random() < (MISSING_DISCHARGE_SUMMARY if self.recent(end) else MISSING_DISCHARGE_SUMMARY_OLD):
            self.truth.missing_discharge_summaries.append(enc["id"])
            return
        ds_day, omit = self.summary_paperwork(end)
        secondary = [DX[c].phrase for c in a.extra] + ([DX[SECONDARY[sec_key][0]].phrase] if sec_key else [])
        secondary += [dx.phrase for dx, _ in comorbid]
        follow = f"Follow up with {self.pcp[1]} in 1 to 2 weeks."
        ds = self.document("discharge", enc, ds_day, attending, lambda s: notes.discharge_summary(
            chart, admitted=_us(start), discharged=_us(end), attending=attending[1], principal=principal.phrase,
            secondary=secondary, procedures=procedures, course=course, home_meds=chart.meds, new_meds=new_meds,
            stopped_meds=stopped, disposition=_DISPO[dispo], follow_up=follow,
            condition="Stable." if dispo == "home" else "Stable for transfer.", omit=omit, signed_at=s), minute=780)
        if omit:
            self.truth.incomplete_discharge_summaries.append((ds["id"], _OMIT[omit]))

    def operation(self, p: Proc, enc: dict[str, Any], when: int, preop: Dx, postop: Dx, cond: dict[str, Any],
                  path: tuple[list[str], list[str], list[tuple[str, str]]] | None = None) -> None:
        surgeon = self.staff(p.surgeon)
        proc = self.procedure(p.text, enc, when, surgeon[0], pcs=p.pcs, snomed=p.snomed, reason=cond,
                              surgical=bool(p.anesthesia))
        self.surgical.append(f"{p.text} ({date.fromordinal(when).year})")
        chart = self.chart(when)
        specimen = ""
        if p.specimen:
            specimen = _PATH_BENIGN[p.specimen][0] if p.specimen in _PATH_BENIGN else f"{postop.phrase}, {p.text.lower()}"
        if p.anesthesia and self.recent(when) and self.hrng.random() < MISSING_OPERATIVE:
            self.truth.missing_operative_reports.append(proc["id"])
        elif p.anesthesia:
            t = proc["performedDateTime"]
            op_minute = int(t[11:13]) * 60 + int(t[14:16]) + 60 + self.hrng.randrange(90)
            self.document("operative", enc, when, surgeon, lambda s: notes.operative_note(
                chart, date=_us(when), surgeon=surgeon[1], preop=preop.phrase, postop=postop.phrase, procedure=p.text,
                anesthesia=p.anesthesia, findings=p.findings, technique=p.technique, ebl=p.ebl, specimen=specimen,
                signed_at=s), minute=op_minute)
        if p.specimen in _PATH_BENIGN:
            spec_text, dx_text = _PATH_BENIGN[p.specimen]
            self.pathology(enc, when, surgeon, [spec_text], postop.phrase, "Received in formalin, a single tan-pink specimen.",
                           [f"{spec_text}:", f"- {dx_text}"], [], may_be_missing=True)
        elif path is not None:
            specimens, diagnosis, synoptic = path
            self.pathology(enc, when, surgeon, specimens, postop.phrase,
                           "Received fresh, oriented with sutures; inked and serially sectioned.", diagnosis, synoptic)

    def pathology(self, enc: dict[str, Any], when: int, submitter: tuple[str, str], specimens: list[str], history: str,
                  gross: str, diagnosis: list[str], synoptic: list[tuple[str, str]], comment: str = "",
                  may_be_missing: bool = False) -> dict[str, Any] | None:
        pathologist = self.staff("pathology")
        reported = when + self.rng.randint(2, 5)
        accession = f"S{date.fromordinal(when).year % 100:02d}-{self.rng.randrange(10000, 99999)}"
        chart = self.chart(when)
        specimen: dict[str, Any] = {
            "resourceType": "Specimen", "id": self.hid(), "status": "available", "subject": self.subject,
            "accessionIdentifier": {"system": "https://chartkeeper.example.org/pathology-accession", "value": accession},
            "type": {"text": specimens[0][:200]},
            "collection": {"collectedDateTime": enc["period"]["start"], "collector": _ref("Practitioner", submitter[0])},
        }
        self.out.append(specimen)
        if may_be_missing and self.recent(when) and self.hrng.random() < MISSING_PATHOLOGY:
            self.truth.missing_pathology_reports.append(specimen["id"])
            return None
        return self.document("pathology", enc, min(reported, self.t0), pathologist, lambda s: notes.pathology_report(
            chart, accession=accession, collected=_us(when), reported=_us(reported), pathologist=pathologist[1],
            submitter=submitter[1], specimens=specimens, history=history, gross=gross, diagnosis=diagnosis, synoptic=synoptic,
            comment=comment, signed_at=s), minute=660)

    # ---- cancer ------------------------------------------------------------------------------------

    def cancer_story(self, site: str, last: int) -> None:
        rng = self.rng
        primary: Primary = rng.choice(CANCER_SITES[site])
        hists = HISTOLOGIES[site]
        hist = rng.choices(hists, weights=[h.weight for h in hists])[0]
        dx = DX[primary.code]
        biopsy_day = self.cancer_day
        reportable = site != "bcc"
        (self.truth.cancer_patients if reportable else self.truth.skin_bcc_patients).append(self.pid)
        details = self.tumor(site, primary, hist.text)
        # 1. diagnostic work-up and biopsy
        spec = _BIOPSY_SPECIALTY[site]
        doc = self.staff(spec)
        loc = "clinic" if site in ("melanoma", "bcc") else "cancer"
        enc = self.encounter("AMB", "procedure", biopsy_day, biopsy_day, doc, loc, org=self.s.hospital)
        if site == "prostate":
            self.lab("psa", enc, biopsy_day - 1 if biopsy_day - 1 > self.start else biopsy_day, rng.uniform(6.0, 18.0))
        if site in ("breast", "lung"):
            rad = self.staff("radiology")
            study = "MG diagnostic mammogram with ultrasound" if site == "breast" else "CT chest with contrast"
            finding = (f"Irregular spiculated mass, {details['size']} cm, in the {primary.site_text.lower()}. BI-RADS 5: highly "
                       "suggestive of malignancy." if site == "breast" else
                       f"Spiculated {details['size']} cm mass in the {primary.site_text.lower()}. No pleural effusion.")
            self.document("radiology", enc, biopsy_day, rad, lambda s: notes.radiology_report(
                self.chart(biopsy_day), date=_us(biopsy_day), radiologist=rad[1], study=study,
                indication="Abnormal screening study." if site == "breast" else "Pulmonary nodule.", findings=finding,
                impression=finding, signed_at=s), minute=600)
        bkey = _BIOPSY[site]
        cond = self.condition(dx, enc, biopsy_day, biopsy_day + 3, category="encounter-diagnosis", asserter=doc[0])
        self.diagnose(enc, [cond], "billing")
        self.procedure(OUTPATIENT_PROCS[bkey][0], enc, biopsy_day, doc[0], snomed=OUTPATIENT_PROCS[bkey][1], reason=cond)
        self.pathology(enc, biopsy_day, doc, [f"{primary.site_text}, {OUTPATIENT_PROCS[bkey][0].lower()}"],
                       "Mass on imaging." if site in ("breast", "lung") else "Suspicious lesion.",
                       "Received in formalin, multiple tan core fragments." if site != "melanoma" and site != "bcc"
                       else "Received in formalin, a shave of skin.",
                       [f"{primary.site_text}, biopsy:", f"- {details['biopsy_dx']}"], [])
        self.problems.append((dx, cond["id"], biopsy_day + 3))
        # 2. definitive surgery
        surg_day = biopsy_day + rng.randint(18, 40)
        if surg_day >= last:
            return
        path = (details["specimens"], details["final"], details["synoptic"])
        if primary.surgery in PROCS:
            p = PROCS[primary.surgery]
            los = 1 if site in ("breast", "prostate") else rng.randint(2, 4)
            if surg_day + los >= last:
                return
            surgeon_spec = p.surgeon
            attending = self.staff(surgeon_spec)
            enc = self.encounter("IMP", "surgical_admission", surg_day, surg_day + los, attending, "or", minute=390,
                                 end_minute=660, admit_source="outp", dispo="home")
            self.diagnose(enc, [cond], "DD")
            chart = self.chart(surg_day)
            vit = self.vitals(surg_day)
            results = self.labs(["bmp", "cbc"], enc, surg_day)
            self.document("hp", enc, surg_day, attending, lambda s: notes.history_and_physical(
                chart, admitted=_us(surg_day), attending=attending[1], cc=f"Scheduled surgery for {dx.abbrev}",
                hpi=f"was diagnosed with {details['biopsy_dx'].lower().rstrip('.')} of the {primary.site_text.lower()} on "
                    f"biopsy of {_us(biopsy_day)} and presents for {p.text.lower()}",
                negatives="Denies fever, chest pain or shortness of breath.", exam="Well appearing. No lymphadenopathy.",
                vitals=vit, labs=results, imaging="", assessment=[(dx.phrase, f"Proceed with {p.text.lower()}.")],
                signed_at=s), minute=400)
            self.operation(p, enc, surg_day, dx, dx, cond, path)
            if rng.random() < (MISSING_DISCHARGE_SUMMARY if self.recent(surg_day + los) else MISSING_DISCHARGE_SUMMARY_OLD):
                self.truth.missing_discharge_summaries.append(enc["id"])
            else:
                end = surg_day + los
                self.document("discharge", enc, end, attending, lambda s: notes.discharge_summary(
                    chart, admitted=_us(surg_day), discharged=_us(end), attending=attending[1], principal=dx.phrase,
                    secondary=[], procedures=[(p.text, _us(surg_day))],
                    course=f"Underwent {p.text.lower()} without complication. Pathology: {details['final'][1].lstrip('- ')}",
                    home_meds=chart.meds, new_meds=[MEDS["oxycodone_apap"]], stopped_meds=[], disposition="Home",
                    follow_up="Oncology and surgical follow-up in 2 weeks to review pathology.", condition="Stable.", omit="",
                    signed_at=s), minute=780)
        else:
            text, snomed = OUTPATIENT_PROCS[primary.surgery]
            surgeon = self.staff("dermatology")
            enc = self.encounter("AMB", "procedure", surg_day, surg_day, surgeon, "clinic", org=self.s.hospital)
            self.diagnose(enc, [cond], "billing")
            self.procedure(text, enc, surg_day, surgeon[0], snomed=snomed, reason=cond)
            chart = self.chart(surg_day)
            self.document("operative", enc, surg_day, surgeon, lambda s: notes.operative_note(
                chart, date=_us(surg_day), surgeon=surgeon[1], preop=dx.phrase, postop=dx.phrase, procedure=text,
                anesthesia="local anesthesia", findings=f"Healed biopsy site, {primary.site_text.lower()}.",
                technique="An ellipse was designed around the biopsy site with the planned margins, excised to the subcutaneous "
                "fat and closed in layers.", ebl=5, specimen=f"{primary.site_text}, {text.lower()}", signed_at=s))
            self.pathology(enc, surg_day, surgeon, details["specimens"], dx.phrase, "Received in formalin, an ellipse of skin.",
                           details["final"], details["synoptic"])
        if not reportable:
            return
        # 3. adjuvant treatment
        onc = self.staff("oncology")
        treat_day = surg_day + rng.randint(28, 45)
        if treat_day >= last:
            return
        drugs: tuple[str, ...] = ()
        if site == "breast":
            drugs = (_CHEMO["breast"] if details["nodes_pos"] else ()) + (
                ("anastrozole" if self.age_now >= 55 else "tamoxifen",) if details["er"] else ())
        elif site == "lung":
            drugs = _LUNG_CHEMO[hist.text] if details["nodes_pos"] or hist.text == "Small cell carcinoma" else ()
        elif site == "colon":
            drugs = _CHEMO["colon"] if details["nodes_pos"] else ()
        elif site == "melanoma":
            drugs = _CHEMO["melanoma"] if details["nodes_pos"] else ()
        elif site == "prostate":
            drugs = ("leuprolide",) if details["nodes_pos"] or rng.random() < 0.2 else ()
        enc = self.encounter("AMB", "consult", treat_day, treat_day, onc, "cancer", reason=DX["Z51.11"] if drugs else None,
                             org=self.s.hospital)
        self.diagnose(enc, [cond], "billing")
        started = []
        for mk in drugs:
            med = MEDS[mk]
            long = mk in _LATE_ACTIVE
            self.med_request(med, enc, treat_day, onc[0], category="outpatient",
                             status="active" if long or treat_day > self.t0 - 90 else "completed", reason=cond)
            started.append(med.short)
            if long:
                self.meds.append((med, treat_day, 10**7))
        chart = self.chart(treat_day)
        stage_txt = f"{details['pt']} {details['pn']}"
        plan = (f"Start {', '.join(started)}." if started else "No systemic therapy indicated; surveillance.")
        rad_key = primary.radiation if primary.radiation and (site == "breast" or rng.random() < 0.3) else ""
        if rad_key:
            plan += " Referred to radiation oncology."
        self.document("consult", enc, treat_day, onc, lambda s: notes.consult_note(
            chart, date=_us(treat_day), consultant=onc[1], specialty="Hematology and Oncology", requested_by=self.pcp[1],
            reason=f"Newly diagnosed {dx.phrase.lower()}",
            impression=f"{dx.phrase}, {hist.text.lower()}, pathologic stage {stage_txt}, "
                       f"status post {details['surgery'].lower()}.",
            recommendations=plan, signed_at=s))
        if rad_key:
            code, title, text = RADIATION[rad_key]
            ro = self.staff("radiation_oncology")
            r_day = treat_day + rng.randint(14, 30)
            if r_day + 40 < last:
                enc = self.encounter("AMB", "procedure", r_day, r_day, ro, "cancer", reason=DX["Z51.0"], org=self.s.hospital)
                self.diagnose(enc, [cond], "billing")
                self.procedure(text, enc, r_day, ro[0], pcs=((code, title),), reason=cond, until=r_day + 40)
                chart = self.chart(r_day)
                self.document("progress", enc, r_day, ro, lambda s: notes.office_note(
                    chart, date=_us(r_day), author=ro[1], visit="Radiation oncology", subjective="Here to begin radiation. "
                    "Denies pain or skin changes.", vitals=self.vitals(r_day), labs=[],
                    assessment=[(dx.phrase, f"{text}. Simulation completed today.")], signed_at=s))
        # 4. follow-up every 3 to 6 months
        f_day = treat_day + rng.randint(90, 180)
        while f_day < last - 1:
            enc = self.encounter("AMB", "followup", f_day, f_day, onc, "cancer", org=self.s.hospital)
            self.diagnose(enc, [cond], "billing")
            results = self.labs(["cbc"] + (["psa"] if site == "prostate" else []), enc, f_day,
                                {"psa": rng.uniform(0.01, 0.1)} if site == "prostate" else None)
            chart = self.chart(f_day)
            dying = self.death and self.death - f_day < 200
            status = ("Progressive disease on restaging; goals of care discussed, hospice referral offered." if dying
                      else "No evidence of recurrence on examination and labs.")
            self.document("progress", enc, f_day, onc, lambda s, f_day=f_day, chart=chart, results=results, status=status:
                          notes.office_note(chart, date=_us(f_day), author=onc[1], visit="Oncology follow-up",
                                            subjective="Here for surveillance. Denies new pain, weight loss or night sweats.",
                                            vitals=self.vitals(f_day), labs=results,
                                            assessment=[(dx.phrase, status + " Return in 3 to 6 months.")], signed_at=s))
            f_day += rng.randint(90, 180)

    def tumor(self, site: str, primary: Primary, histology: str) -> dict[str, Any]:
        rng = self.rng
        size = round(rng.uniform(0.6, 4.5), 1)
        grade = rng.choice((1, 2, 2, 3))
        margin_pos = rng.random() < 0.08
        margins = ("Margins: Positive for carcinoma at the deep margin." if margin_pos else
                   f"Margins: Negative for carcinoma; closest margin {rng.randint(2, 12)} mm.")
        if site in ("breast",):
            n_ex = rng.randint(2, 15)
        elif site == "lung":
            n_ex = rng.randint(8, 18)
        elif site == "colon":
            n_ex = rng.randint(12, 26)
        elif site == "prostate":
            n_ex = rng.randint(4, 14)
        elif site == "melanoma":
            n_ex = rng.randint(1, 3) if rng.random() < 0.6 else 0
        else:
            n_ex = 0
        n_pos = 0 if n_ex == 0 or rng.random() < 0.6 else min(n_ex, rng.randint(1, 4))
        p = PROCS.get(primary.surgery)
        surgery = p.text if p else OUTPATIENT_PROCS[primary.surgery][0]
        d: dict[str, Any] = {"size": size, "nodes_pos": n_pos, "surgery": surgery, "er": False}
        nodes = f"Lymph nodes: {n_pos}/{n_ex} positive for metastatic carcinoma." if n_ex else ""
        syn: list[tuple[str, str]] = [("Procedure", surgery), ("Tumor site", primary.site_text)]
        if primary.laterality:
            syn.append(("Specimen laterality", primary.laterality.capitalize()))
        if site == "breast":
            d["er"] = rng.random() < 0.8
            pt = "pT1b" if size <= 1 else "pT1c" if size <= 2 else "pT2"
            pn = "pN0" if n_pos == 0 else "pN1a" if n_pos <= 3 else "pN2a"
            hx = f"{histology}, grade {grade}, {size} cm"
            d["biopsy_dx"] = f"{histology}, grade {grade}."
            syn += [("Histologic type", histology), ("Histologic grade (Nottingham)", f"Grade {grade}"),
                    ("Tumor size", f"{size} cm"), ("Margins", margins.split(": ", 1)[1]),
                    ("Regional lymph nodes", f"{n_pos}/{n_ex} positive"),
                    ("Estrogen receptor", "Positive (95%)" if d["er"] else "Negative"),
                    ("Progesterone receptor", "Positive (60%)" if d["er"] else "Negative"),
                    ("HER2 (IHC)", "Negative (1+)" if rng.random() < 0.85 else "Positive (3+)")]
        elif site == "lung":
            pt = "pT1a" if size <= 1 else "pT1b" if size <= 2 else "pT1c" if size <= 3 else "pT2a"
            pn = "pN0" if n_pos == 0 else "pN1"
            hx = f"{histology}, {'moderately' if grade == 2 else 'well' if grade == 1 else 'poorly'} differentiated, {size} cm"
            d["biopsy_dx"] = f"{histology}."
            syn += [("Histologic type", histology), ("Tumor size", f"{size} cm"), ("Visceral pleural invasion", "Not identified"),
                    ("Margins", margins.split(": ", 1)[1]), ("Regional lymph nodes", f"{n_pos}/{n_ex} positive")]
        elif site == "colon":
            pt = "pT3" if rng.random() < 0.7 else "pT2"
            pn = "pN0" if n_pos == 0 else "pN1a" if n_pos == 1 else "pN1b" if n_pos <= 3 else "pN2a"
            hx = f"{histology}, moderately differentiated (G2), {size} cm, invading {'through the muscularis propria into pericolorectal tissue' if pt == 'pT3' else 'the muscularis propria'}"  # noqa: E501
            d["biopsy_dx"] = f"{histology}, moderately differentiated."
            syn += [("Histologic type", histology), ("Histologic grade", "G2, moderately differentiated"),
                    ("Tumor size", f"{size} cm"), ("Margins", margins.split(": ", 1)[1]),
                    ("Regional lymph nodes", f"{n_pos}/{n_ex} positive"), ("Lymphovascular invasion", "Not identified")]
        elif site == "prostate":
            gleason = rng.choice(("3+3=6 (Grade Group 1)", "3+4=7 (Grade Group 2)", "3+4=7 (Grade Group 2)",
                                  "4+3=7 (Grade Group 3)"))
            pt = "pT2" if rng.random() < 0.7 else "pT3a"
            pn = "pN0" if n_pos == 0 else "pN1"
            hx = f"{histology}, Gleason score {gleason}, involving {rng.randint(10, 35)}% of the gland"
            d["biopsy_dx"] = f"{histology}, Gleason score {gleason}, in {rng.randint(2, 7)} of 12 cores."
            syn += [("Histologic type", histology), ("Gleason score", gleason), ("Margins", margins.split(": ", 1)[1]),
                    ("Regional lymph nodes", f"{n_pos}/{n_ex} positive")]
        elif site == "melanoma":
            breslow = round(rng.uniform(0.3, 3.0), 1)
            pt = "pT1a" if breslow < 0.8 else "pT1b" if breslow <= 1.0 else "pT2a" if breslow <= 2.0 else "pT3a"
            pn = "pNX" if n_ex == 0 else "pN0" if n_pos == 0 else "pN1a"
            hx = f"{histology}, Breslow thickness {breslow} mm, ulceration not identified"
            d["biopsy_dx"] = f"{histology}, Breslow thickness at least {breslow} mm, extending to the deep margin."
            syn += [("Histologic type", histology), ("Breslow thickness", f"{breslow} mm"), ("Ulceration", "Not identified"),
                    ("Margins", margins.split(": ", 1)[1])]
            if n_ex:
                syn.append(("Sentinel lymph nodes", f"{n_pos}/{n_ex} positive"))
            nodes = f"Sentinel lymph nodes: {n_pos}/{n_ex} positive for metastatic melanoma." if n_ex else ""
        else:  # bcc
            pt, pn = "", ""
            hx = histology
            d["biopsy_dx"] = f"{histology}, extending to the deep and peripheral margins."
            syn = []
        d["pt"], d["pn"] = pt, pn
        final = [f"{primary.site_text}, {surgery.lower()}:", f"- {hx}.", f"- {margins}"]
        if nodes:
            final.append(f"- {nodes}")
        if pt:
            final.append(f"- Pathologic stage (AJCC 8th edition): {pt} {pn}.")
            syn.append(("Pathologic stage (AJCC 8th edition)", f"{pt} {pn}"))
        d["final"] = final
        d["synoptic"] = syn
        specimens = [f"{primary.site_text}, {surgery.lower()}"]
        if n_ex and site != "melanoma":
            specimens.append("Regional lymph nodes")
        elif n_ex:
            specimens.append("Sentinel lymph nodes")
        d["specimens"] = specimens
        return d

    def benign_biopsy(self, last: int) -> None:
        rng = self.rng
        if last - self.start < 30:
            return
        day = rng.randrange(self.start, last - 7)
        if self.sex == "female" and rng.random() < 0.6:
            side = rng.choice(("right", "left"))
            dx = DX["D24.1" if side == "right" else "D24.2"]
            key, spec = "breast_biopsy", "surgery"
            site = f"{side.capitalize()} breast, 10 o'clock"
            finding = "Fibroadenoma. Negative for atypia and malignancy."
        else:
            dx, key, spec = DX["D12.5"], "polypectomy", "gastroenterology"
            site = "Sigmoid colon polyp"
            finding = "Tubular adenoma. Negative for high-grade dysplasia and malignancy."
        doc = self.staff(spec)
        enc = self.encounter("AMB", "procedure", day, day, doc, "cancer", org=self.s.hospital)
        cond = self.condition(dx, enc, day, day + 3, category="encounter-diagnosis", asserter=doc[0])
        self.diagnose(enc, [cond], "billing")
        self.procedure(OUTPATIENT_PROCS[key][0], enc, day, doc[0], snomed=OUTPATIENT_PROCS[key][1], reason=cond)
        self.pathology(enc, day, doc, [f"{site}, {OUTPATIENT_PROCS[key][0].lower()}"], "Rule out malignancy.",
                       "Received in formalin, tan tissue fragments.", [f"{site}:", f"- {finding}"], [],
                       comment="Negative for malignancy. Findings are concordant with imaging.")
        self.truth.benign_biopsy_patients.append(self.pid)


def enc_minute(enc: dict[str, Any]) -> int:
    t = enc["period"]["start"][11:16]
    return int(t[:2]) * 60 + int(t[3:])


# --------------------------------------------------------------------------------------------------
# public API
# --------------------------------------------------------------------------------------------------


def _run(patients: int, seed: int, truth: _Truth, today: date | None) -> Iterator[list[dict[str, Any]]]:
    if patients < 0:
        raise ValueError("patients must be zero or more")
    shared = _Shared(random.Random(seed), today or TODAY)
    yield shared.resources
    for i in range(patients):
        yield _Person(shared, truth, seed, i).build()


def generate(patients: int, seed: int, today: date | None = None) -> Iterator[list[dict[str, Any]]]:
    """First yield the shared resources (Organizations: the demo hospital and its clinic; Practitioners
    with NPI identifiers and their PractitionerRoles; Locations), then, per person, the list of FHIR R4
    resources for that person. Deterministic for ``(patients, seed, today)``; ``today`` (default
    ``TODAY``) is the last day of the record (the demo passes the real date)."""
    return _run(patients, seed, _Truth(), today)


def generate_truth(patients: int, seed: int, today: date | None = None) -> dict[str, Any]:
    """What ``generate(patients, seed)`` hides for HIM work to find: ``duplicates`` ((original, duplicate)
    Patient id pairs, with ``duplicate_kinds``), ``cancer_patients`` (reportable), ``skin_bcc_patients``,
    ``benign_biopsy_patients``, ``unsigned_documents`` (DocumentReference ids), ``missing_discharge_summaries``
    (Encounter ids) and ``deceased`` (Patient ids)."""
    truth = _Truth()
    for _ in _run(patients, seed, truth, today):
        pass
    return truth.as_dict()
