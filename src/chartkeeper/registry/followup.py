"""Annual follow-up: who is due, the follow-up rate, vital status from the record, letters as PDF.

Definitions (the registry's, stated once here and in the user guide):

* **Analytic case**: a tumour whose Class of Case (NAACCR item 610) is 00 to 22: diagnosed and/or
  given first-course treatment here.
* **Due for follow-up**: a living patient (Vital Status 1) with at least one analytic tumour whose
  Date of Last Contact is more than N months (12 by default) before today, or unknown. Oldest first.
* **Followed**: at the report date, the patient is dead (Vital Status 0), or was last contacted
  within 15 months before the report date.
* **Follow-up rate**: followed analytic cases / analytic cases, counted per tumour, against the CoC
  targets as the issue states them: 90% of all analytic cases, 80% of analytic cases of living
  patients (for the living rate, only patients not known to be dead count, and followed means a
  contact within 15 months).

Vital status and date of last contact come from the record: Patient.deceased[x] (dead; the date of
death is the date of last contact, NAACCR has no separate item) or the latest encounter.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any, cast

import orjson
from sqlalchemy import Connection, Table, func, or_, select

from chartkeeper.registry.models import RegistryPatientRow, RegistryTumorRow

RPAT = cast(Table, RegistryPatientRow.__table__)
TUM = cast(Table, RegistryTumorRow.__table__)
ANALYTIC = tuple(f"{n:02d}" for n in (0, 10, 11, 12, 13, 14, 20, 21, 22))
FOLLOWED_WITHIN_MONTHS = 15
TARGET_ALL, TARGET_LIVING = 0.90, 0.80


def _day(value: Any) -> date | None:
    if not isinstance(value, str) or len(value) < 10:
        return None
    try:
        return date.fromisoformat(value[:10])
    except ValueError:
        return None


def months_before(d: date, months: int) -> date:
    y, m = divmod(d.year * 12 + d.month - 1 - months, 12)
    m += 1
    for day in (d.day, 30, 29, 28):
        try:
            return date(y, m, day)
        except ValueError:
            continue
    return date(y, m, 28)  # pragma: no cover


def status_from_record(patient: dict[str, Any], encounters: Iterable[dict[str, Any]]) -> tuple[str, date | None]:
    """(vital status, date of last contact): "0" and the date of death when the record says the
    patient died (the last encounter's date when the death has no date), else "1" and the latest
    encounter's end (or start)."""
    latest = None
    for e in encounters:
        if e.get("status") in ("cancelled", "entered-in-error", "planned"):
            continue
        period = e.get("period") or {}
        d = _day(period.get("end")) or _day(period.get("start"))
        if d and (latest is None or d > latest):
            latest = d
    died = patient.get("deceasedDateTime")
    if died:
        return "0", _day(died) or (date(int(died[:4]), 1, 1) if len(died) >= 4 and died[:4].isdigit() else latest)
    if patient.get("deceasedBoolean") is True:
        return "0", latest
    return "1", latest


def items_for(vital: str, dlc: date | None) -> dict[str, str]:
    out = {"vitalStatus": vital} if vital else {}
    if dlc:
        out["dateOfLastContact"] = dlc.strftime("%Y%m%d")
    return out


@dataclass
class Due:
    registry_patient_id: str
    patient_id: str | None
    label: str
    vital_status: str
    date_of_last_contact: date | None
    accession: str
    tumors: list[tuple[str, int | None]] = field(default_factory=list)  # (primary site, year of diagnosis)
    patient_items: dict[str, str] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"registry_patient_id": self.registry_patient_id, "patient_id": self.patient_id, "label": self.label,
                "vital_status": self.vital_status,
                "date_of_last_contact": self.date_of_last_contact.isoformat() if self.date_of_last_contact else None,
                "accession": self.accession, "tumors": [{"primary_site": s, "year": y} for s, y in self.tumors]}


def _due_where(cutoff: date | None, hidden: set[str], ids: Sequence[str] | None = None) -> list[Any]:
    analytic = select(TUM.c.registry_patient_id).where(TUM.c.class_of_case.in_(ANALYTIC))
    where: list[Any] = [RPAT.c.vital_status == "1", RPAT.c.id.in_(analytic)]
    if cutoff is not None:
        where.append(or_(RPAT.c.date_of_last_contact.is_(None), RPAT.c.date_of_last_contact < cutoff))
    if ids is not None:
        where.append(RPAT.c.id.in_(list(ids)))
    if hidden:
        where.append(or_(RPAT.c.patient_id.is_(None), RPAT.c.patient_id.not_in(sorted(hidden))))
    return where


def due_count(conn: Connection, cutoff: date | None, hidden: set[str]) -> int:
    """How many patients ``due`` would list (without a limit)."""
    return int(conn.execute(select(func.count()).select_from(RPAT).where(*_due_where(cutoff, hidden))).scalar_one())


def due(conn: Connection, cutoff: date | None, hidden: set[str], *, ids: Sequence[str] | None = None,
        limit: int = 1000) -> list[Due]:
    """Living patients with an analytic tumour, last contacted before ``cutoff`` (or never), oldest
    first; ``ids`` instead picks these registry patients (living, with an analytic tumour)."""
    where = _due_where(cutoff, hidden, ids)
    rows = conn.execute(select(RPAT).where(*where).order_by(
        RPAT.c.date_of_last_contact.is_not(None), RPAT.c.date_of_last_contact, RPAT.c.id).limit(limit)).all()
    out = []
    tumors: dict[str, list[Any]] = {}
    rids = [r.id for r in rows]
    for i in range(0, len(rids), 500):
        for t in conn.execute(select(TUM.c.registry_patient_id, TUM.c.primary_site, TUM.c.date_of_diagnosis, TUM.c["items"])
                              .where(TUM.c.registry_patient_id.in_(rids[i:i + 500])).order_by(TUM.c.created_at)):
            tumors.setdefault(t.registry_patient_id, []).append(t)
    for r in rows:
        items = orjson.loads(r.items or "{}")
        ts = tumors.get(r.id, [])
        accession = next((orjson.loads(t.items or "{}").get("accessionNumberHosp", "") for t in ts), "")
        out.append(Due(r.id, r.patient_id, r.patient_id_number, r.vital_status, r.date_of_last_contact, accession,
                       [(t.primary_site, t.date_of_diagnosis.year if t.date_of_diagnosis else None) for t in ts], items))
    return out


@dataclass(frozen=True)
class RateLine:
    cases: int
    followed: int
    target: float

    @property
    def rate(self) -> float | None:
        return self.followed / self.cases if self.cases else None

    @property
    def meets_target(self) -> bool | None:
        r = self.rate
        return None if r is None else r >= self.target

    def as_dict(self) -> dict[str, Any]:
        return {"cases": self.cases, "followed": self.followed, "rate": self.rate, "target": self.target,
                "meets_target": self.meets_target}


@dataclass(frozen=True)
class Rate:
    report_date: date
    all_cases: RateLine
    living: RateLine
    definition: str = ("analytic = class of case 00-22, per tumour; followed = dead, or last contact within "
                       f"{FOLLOWED_WITHIN_MONTHS} months before the report date")

    def as_dict(self) -> dict[str, Any]:
        return {"report_date": self.report_date.isoformat(), "all": self.all_cases.as_dict(),
                "living": self.living.as_dict(), "definition": self.definition}


def followed(vital: str, dlc: date | None, report_date: date) -> bool:
    if vital == "0":
        return True
    return dlc is not None and months_before(report_date, FOLLOWED_WITHIN_MONTHS) <= dlc <= report_date


def rate(conn: Connection, report_date: date) -> Rate:
    """The follow-up rate over analytic tumours diagnosed on or before the report date."""
    rows = conn.execute(select(RPAT.c.vital_status, RPAT.c.date_of_last_contact)
                        .select_from(TUM.join(RPAT, RPAT.c.id == TUM.c.registry_patient_id))
                        .where(TUM.c.class_of_case.in_(ANALYTIC),
                               or_(TUM.c.date_of_diagnosis.is_(None), TUM.c.date_of_diagnosis <= report_date))).all()
    all_n = all_f = live_n = live_f = 0
    for vital, dlc in rows:
        ok = followed(vital, dlc, report_date)
        all_n += 1
        all_f += ok
        if vital != "0":
            live_n += 1
            live_f += ok
    return Rate(report_date, RateLine(all_n, all_f, TARGET_ALL), RateLine(live_n, live_f, TARGET_LIVING))


# ------------------------------------------------------------------------------------------------
# Letters


@dataclass(frozen=True)
class Letter:
    facility: str
    dated: date
    to_name: str
    to_address: list[str]
    to_physician: bool
    patient_name: str
    birth_date: date | None
    accession: str
    last_contact: date | None
    # The sender named on letters to patients: not the cancer registry, since the envelope or the page
    # may be read by someone else.
    patient_sender: str = "Patient Follow-up Office"

    @property
    def sender(self) -> str:
        return self.facility if self.to_physician else self.patient_sender


def address_lines(addresses: Sequence[dict[str, Any]]) -> list[str]:
    if not addresses:
        return []
    a = next((x for x in addresses if x.get("use") in ("work", "home")), addresses[0])
    lines = [str(x) for x in a.get("line") or ()]
    city = ", ".join(x for x in (a.get("city"), " ".join(y for y in (a.get("state"), a.get("postalCode")) if y)) if x)
    if city:
        lines.append(city)
    return lines


def _us(d: date | None) -> str:
    return d.strftime("%m/%d/%Y") if d else "unknown"


def letter_text(letter: Letter) -> list[str]:
    """The letter's paragraphs. Only what the reader needs to answer: the patient's name and date of
    birth to identify them, our accession number, the last contact date; never the diagnosis in a
    letter to the patient (someone else may open it)."""
    if letter.to_physician:
        return [
            f"Dear {letter.to_name},",
            f"Re: {letter.patient_name}, date of birth {_us(letter.birth_date)} (registry accession {letter.accession or '-'})",
            "The cancer registry follows every patient diagnosed or treated for cancer at our facility once a year. "
            f"Our last contact with this patient was on {_us(letter.last_contact)}.",
            "Please tell us: the date you last saw the patient; whether the patient is alive (if not, the date of death); "
            "and the cancer status at that visit (no evidence of disease, disease present, or unknown).",
            "You may reply on this letter and return it to the registry, or call us. Thank you for your help.",
            f"{letter.facility}",
        ]
    return [
        f"Dear {letter.patient_name},",
        "Once a year we write to people who were cared for at our facility to ask how they are. Your answer helps us "
        "improve care for others.",
        "Please tell us the date you last saw a doctor, and that doctor's name, on this letter and return it to us, "
        "or call us. If you would rather we did not write to you again, tell us and we will stop.",
        "Thank you.",
        f"{letter.patient_sender} (reference {letter.accession or '-'})",
    ]


def letters_pdf(letters: Sequence[Letter]) -> bytes:
    """One page per letter, US letter size, as a PDF (reportlab). An empty list gives a one-page PDF
    saying there is nothing due."""
    from reportlab.lib.pagesizes import letter as page_size
    from reportlab.lib.utils import simpleSplit
    from reportlab.pdfgen import canvas

    buf = io.BytesIO()
    c = canvas.Canvas(buf, pagesize=page_size, invariant=1)
    c.setTitle("Cancer registry follow-up letters")
    width, height = page_size
    margin = 72
    if not letters:
        c.setFont("Helvetica", 12)
        c.drawString(margin, height - margin, "No patients are due for follow-up.")
        c.showPage()
    for lt in letters:
        y = height - margin
        c.setFont("Helvetica-Bold", 13)
        c.drawString(margin, y, lt.sender)
        y -= 28
        c.setFont("Helvetica", 11)
        c.drawString(margin, y, _us(lt.dated))
        y -= 28
        for line in [lt.to_name, *lt.to_address]:
            c.drawString(margin, y, line)
            y -= 15
        y -= 20
        for para in letter_text(lt):
            for line in simpleSplit(para, "Helvetica", 11, width - 2 * margin):
                c.drawString(margin, y, line)
                y -= 15
            y -= 10
        c.showPage()
    c.save()
    return buf.getvalue()
