"""The coding workflow's JSON API under /api/coding. Thin: each route parses its input, calls one
service function (which checks policy and audits) and returns JSON. Errors are OperationOutcomes
whose issues name the field and the fix. (Code search is the encoder's: /api/coding/search.)

Cookie sessions must send the CSRF token (header X-CSRF-Token) on every POST and PUT; bearer-token
clients need none.
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, date, datetime
from enum import StrEnum
from typing import Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, Field

from chartkeeper.coding.models import CodeSource, CodingSetting, Decision
from chartkeeper.coding.service import (
    Abstract,
    CodingService,
    DecisionInput,
    DiagnosisInput,
    ProcedureInput,
    QueryEvidence,
    QueueFilter,
)
from chartkeeper.coding.service import Query as CodingQuery
from chartkeeper.security.deps import check_csrf, principal_from_request
from chartkeeper.security.principal import Principal

router = APIRouter(prefix="/api/coding", tags=["coding"])


def service(request: Request) -> CodingService:
    svc = getattr(request.app.state, "coding", None)
    if svc is None:
        svc = CodingService(request.app.state.db, records=request.app.state.records)
        request.app.state.coding = svc
    return svc  # type: ignore[no-any-return]


def writer(request: Request) -> Principal:
    """The caller of a POST or PUT, after the CSRF check for cookie sessions."""
    p = principal_from_request(request)
    check_csrf(request)
    return p


def jsonable(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, StrEnum):
        return value.value
    if isinstance(value, str):
        return str(value)
    return value


def _utc(dt: datetime | None) -> datetime | None:
    return dt.replace(tzinfo=UTC) if dt is not None and dt.tzinfo is None else dt


def abstract_json(a: Abstract) -> dict[str, Any]:
    out = jsonable(a)
    item = out.pop("item")
    for line in (*out["diagnoses"], *out["procedures"]):
        line.pop("kind", None)
    return {**item, **out}


# --- bodies ---------------------------------------------------------------------------------------


class DiagnosisBody(BaseModel):
    code: str = Field(max_length=16, examples=["E11.22"])
    poa: str | None = Field(default=None, max_length=1, description="Y, N, U, W or 1; inpatients only")
    source: CodeSource = CodeSource.MANUAL


class ProcedureBody(BaseModel):
    code: str = Field(max_length=16, examples=["0DTJ4ZZ", "99213"])
    system: Literal["icd10pcs", "hcpcs"] | None = None
    performed: date | None = None
    source: CodeSource = CodeSource.MANUAL


class CodesBody(BaseModel):
    diagnoses: list[DiagnosisBody] = Field(default_factory=list, max_length=100)
    procedures: list[ProcedureBody] = Field(default_factory=list, max_length=100)

    def inputs(self) -> tuple[list[DiagnosisInput], list[ProcedureInput]]:
        return ([DiagnosisInput(d.code, d.poa, d.source) for d in self.diagnoses],
                [ProcedureInput(p.code, p.system, p.performed, p.source) for p in self.procedures])


class AssignBody(BaseModel):
    user_id: str | None = Field(default=None, max_length=64, description="a coder's user id; yourself when empty")


class DecisionBody(BaseModel):
    code: str = Field(max_length=16)
    decision: Decision
    final_code: str | None = Field(default=None, max_length=16)
    poa: str | None = Field(default=None, max_length=1)


class DecisionsBody(BaseModel):
    decisions: list[DecisionBody] = Field(max_length=200)


class ReasonBody(BaseModel):
    reason: str = Field(max_length=1000)


class EvidenceBody(BaseModel):
    reference: str = Field(max_length=200, examples=["Observation/hgb-1"])
    excerpt: str = Field(max_length=2000, examples=["Hemoglobin 7.9 g/dL"])


class QueryBody(BaseModel):
    physician_id: str = Field(max_length=100)
    question: str = Field(max_length=4000)
    options: list[str] = Field(default_factory=list, max_length=20)
    evidence: list[EvidenceBody] = Field(default_factory=list, max_length=20)


class AnswerBody(BaseModel):
    answer: str = Field(max_length=300, description="one of the options offered, as written")
    answer_text: str = Field(default="", max_length=1000, description="your words, required for Other")


# --- the encoder ----------------------------------------------------------------------------------


@router.get("/search")
def get_search(request: Request, q: str = Query(min_length=1, max_length=300, description="the statement, as written"),
               system: Literal["icd10cm", "icd10pcs"] = "icd10cm",
               limit: int = Query(default=10, ge=1, le=50)) -> list[dict[str, Any]]:
    """Ranked billable codes for a diagnostic statement or procedure, with titles, scores and the notes
    that apply (a code needing a 7th character lists its choices). Reads no patient data: any logged-in
    user may search; nothing is audited."""
    from chartkeeper.coding.encoder import search

    principal_from_request(request)
    return [h.as_dict() for h in search(q, system, limit)]


# --- the queue ------------------------------------------------------------------------------------


@router.get("/queue")
def get_queue(request: Request, setting: CodingSetting | None = None, status: str = "open",
              assigned: str | None = Query(default=None, description="me, none, or a user id"),
              older_than_days: int | None = Query(default=None, ge=0, le=3650),
              limit: int = Query(default=100, ge=1, le=500), offset: int = Query(default=0, ge=0)) -> dict[str, Any]:
    """Discharged encounters to code (open ones by default: the DNFB list), oldest discharge first."""
    p = principal_from_request(request)
    who = {"me": p.user_id, "none": ""}.get(assigned or "", assigned)
    page = service(request).queue(p, QueueFilter(setting=setting, status=status, assigned_to=who,
                                                 older_than_days=older_than_days, limit=limit, offset=offset))
    return {"total": page.total, "rows": [{**jsonable(r), "patient": page.patients.get(r.patient_id or "", ""),
                                           "assigned_name": page.coders.get(r.assigned_to or "", "")}
                                          for r in page.rows]}


@router.get("/counts")
def get_counts(request: Request) -> dict[str, Any]:
    """DNFB: discharged, not final billed, by setting and days since discharge."""
    return service(request).counts(principal_from_request(request))


# --- one abstract ---------------------------------------------------------------------------------


@router.get("/abstracts/{encounter_id}")
def get_abstract(request: Request, encounter_id: str) -> dict[str, Any]:
    return abstract_json(service(request).abstract(principal_from_request(request), encounter_id))


@router.put("/abstracts/{encounter_id}/codes")
def put_codes(request: Request, encounter_id: str, body: CodesBody, p: Principal = Depends(writer)) -> dict[str, Any]:
    """Replace the codes: diagnoses in order (the first is the principal / first-listed), procedures likewise."""
    dx, px = body.inputs()
    return abstract_json(service(request).save_codes(p, encounter_id, dx, px))


@router.post("/abstracts/{encounter_id}/assign")
def post_assign(request: Request, encounter_id: str, body: AssignBody | None = None,
                p: Principal = Depends(writer)) -> dict[str, Any]:
    return abstract_json(service(request).assign(p, encounter_id, body.user_id if body else None))


@router.post("/abstracts/{encounter_id}/suggest")
def post_suggest(request: Request, encounter_id: str, p: Principal = Depends(writer)) -> dict[str, Any]:
    """Run computer-assisted coding; each suggestion waits for the coder's decision."""
    return {"suggestions": jsonable(service(request).suggest(p, encounter_id))}


@router.post("/abstracts/{encounter_id}/decisions")
def post_decisions(request: Request, encounter_id: str, body: DecisionsBody,
                   p: Principal = Depends(writer)) -> dict[str, Any]:
    decisions = [DecisionInput(d.code, d.decision, d.final_code, d.poa) for d in body.decisions]
    return abstract_json(service(request).decide(p, encounter_id, decisions))


@router.get("/abstracts/{encounter_id}/edits")
def get_edits(request: Request, encounter_id: str) -> dict[str, Any]:
    return {"edits": jsonable(service(request).edits(principal_from_request(request), encounter_id))}


@router.get("/abstracts/{encounter_id}/drg")
def get_drg(request: Request, encounter_id: str) -> dict[str, Any]:
    return {"drg": jsonable(service(request).drg(principal_from_request(request), encounter_id))}


@router.post("/abstracts/{encounter_id}/what-if")
def post_what_if(request: Request, encounter_id: str, body: CodesBody) -> dict[str, Any]:
    """The MS-DRG with these codes instead of the stored ones; nothing is stored (no CSRF needed)."""
    dx, px = body.inputs()
    return jsonable(service(request).what_if(principal_from_request(request), encounter_id, dx, px))


@router.post("/abstracts/{encounter_id}/finalize")
def post_finalize(request: Request, encounter_id: str, p: Principal = Depends(writer)) -> dict[str, Any]:
    r = service(request).finalize(p, encounter_id)
    return {"abstract": abstract_json(r.abstract), "warnings": jsonable(r.warnings),
            "encounter_version": r.encounter_version, "claim_id": r.claim_id, "edits_checked": r.edits_checked}


@router.post("/abstracts/{encounter_id}/reopen")
def post_reopen(request: Request, encounter_id: str, body: ReasonBody, p: Principal = Depends(writer)) -> dict[str, Any]:
    return abstract_json(service(request).reopen(p, encounter_id, body.reason))


# --- physician queries ------------------------------------------------------------------------------


def query_json(q: CodingQuery) -> dict[str, Any]:
    return jsonable(q)  # type: ignore[no-any-return]


@router.post("/abstracts/{encounter_id}/queries", status_code=201)
def post_query(request: Request, encounter_id: str, body: QueryBody, p: Principal = Depends(writer)) -> dict[str, Any]:
    """Send a compliant query to a physician; it lands in their inbox (a FHIR Task they own)."""
    q = service(request).send_query(p, encounter_id, body.physician_id, body.question, body.options,
                                    [QueryEvidence(e.reference, e.excerpt) for e in body.evidence])
    return query_json(q)


@router.get("/queries")
def get_my_queries(request: Request, include_closed: bool = False) -> dict[str, Any]:
    """The calling physician's coding queries."""
    qs = service(request).physician_queries(principal_from_request(request), include_closed=include_closed)
    return {"queries": [query_json(q) for q in qs]}


@router.get("/queries/{query_id}")
def get_query(request: Request, query_id: str) -> dict[str, Any]:
    return query_json(service(request).query(principal_from_request(request), query_id))


@router.post("/queries/{query_id}/answer")
def post_answer(request: Request, query_id: str, body: AnswerBody, p: Principal = Depends(writer)) -> dict[str, Any]:
    return query_json(service(request).answer_query(p, query_id, body.answer, body.answer_text))


@router.post("/queries/{query_id}/withdraw")
def post_withdraw(request: Request, query_id: str, body: ReasonBody, p: Principal = Depends(writer)) -> dict[str, Any]:
    return query_json(service(request).withdraw_query(p, query_id, body.reason))


# --- reports -----------------------------------------------------------------------------------------


@router.get("/reports/accuracy")
def get_accuracy(request: Request, since: datetime | None = None, until: datetime | None = None) -> dict[str, Any]:
    rows = service(request).accuracy(principal_from_request(request), since=_utc(since), until=_utc(until))
    return {"rows": [{**jsonable(r), "accepted_share": r.share(Decision.ACCEPTED), "edited_share": r.share(Decision.EDITED),
                      "rejected_share": r.share(Decision.REJECTED)} for r in rows]}


@router.get("/reports/throughput")
def get_throughput(request: Request, since: datetime | None = None, until: datetime | None = None) -> dict[str, Any]:
    return {"rows": jsonable(service(request).throughput(principal_from_request(request), since=_utc(since), until=_utc(until)))}
