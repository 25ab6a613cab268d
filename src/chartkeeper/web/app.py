"""Application factory: one FastAPI app serving the FHIR API, the JSON API and the web pages."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from chartkeeper import __version__
from chartkeeper.coding.api import router as coding_router
from chartkeeper.completion.rules import load_rules
from chartkeeper.completion.schedule import ReminderLoop
from chartkeeper.completion.service import CompletionService, reset_listener_rules
from chartkeeper.config import Settings, get_settings
from chartkeeper.db import Database
from chartkeeper.fhir.api import FHIR_JSON, fhir_error_response
from chartkeeper.fhir.api import router as fhir_router
from chartkeeper.fhir.errors import FhirError, Issue
from chartkeeper.fhir.service import RecordService
from chartkeeper.registry.api import router as registry_router
from chartkeeper.web import coding_pages, completion_pages, pages, registry_pages


class BodyLimit:
    """Refuses a request whose declared body is over the limit with 413, before reading it.
    (A plain ASGI middleware: Starlette's BaseHTTPMiddleware costs a third of a simple request.)
    Bodies sent without a length are capped while read, in ``fhir.api.json_body``."""

    def __init__(self, app: Any, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            for name, value in scope["headers"]:
                if name == b"content-length" and value.isdigit() and int(value) > self.max_bytes:
                    err = FhirError(413, f"The request body is larger than {self.max_bytes} bytes.", code="too-costly")
                    if scope["path"].startswith("/fhir"):
                        resp: Response = fhir_error_response(err)
                    else:
                        resp = JSONResponse({"detail": err.message}, status_code=413)
                    await resp(scope, receive, send)
                    return
        await self.app(scope, receive, send)


def create_app(settings: Settings | None = None, db: Database | None = None) -> FastAPI:
    """The app. The chart completion rules are loaded and checked once here: a bad rule file stops
    start-up with :class:`~chartkeeper.completion.rules.RuleFileError`, whose message lists every
    problem as a sentence (``CHARTKEEPER_COMPLETION_RULES`` names the file; the defaults otherwise)."""
    settings = settings or get_settings()
    rules = load_rules()
    reset_listener_rules(rules)
    db = db or Database(settings.database_url)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Physicians' reminders and escalations on a schedule while the server runs.
        loop = ReminderLoop(app.state.completion, settings.reminder_minutes)
        loop.start()
        try:
            yield
        finally:
            loop.stop()

    app = FastAPI(title="Chartkeeper", version=__version__, lifespan=lifespan,
                  description="Health information management: the versioned FHIR R4 patient record and "
                              "the HIM work around it.")
    app.state.settings = settings
    app.state.db = db
    app.state.records = RecordService(db)
    app.state.completion = CompletionService(db, rules, records=app.state.records)

    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)

    @app.exception_handler(FhirError)
    async def _fhir_error(request: Request, exc: FhirError) -> Response:
        page = pages.error_page(request, exc.status, exc.message)  # HTML pages answer in HTML
        return page if page is not None else fhir_error_response(exc)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
        page = pages.error_page(request, exc.status_code, exc.detail)  # None for /fhir, /api, HTMX, JSON
        if page is not None:
            return page
        if request.url.path.startswith("/fhir"):
            code = {401: "login", 403: "forbidden", 404: "not-found",
                    405: "not-supported"}.get(exc.status_code, "processing")
            resp = JSONResponse({"resourceType": "OperationOutcome",
                                 "issue": [Issue(str(exc.detail), code=code).as_fhir()]},
                                status_code=exc.status_code, media_type=FHIR_JSON)
        else:
            resp = JSONResponse({"detail": exc.detail}, status_code=exc.status_code)
        for k, v in (exc.headers or {}).items():
            resp.headers[k] = v
        return resp

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> Response:
        issues = []
        for e in exc.errors():
            loc = ".".join(str(x) for x in e.get("loc", ()))
            issues.append(Issue(f"{loc}: {e.get('msg')}", code="invalid", path=loc))
        if request.url.path.startswith("/fhir"):
            return fhir_error_response(FhirError(400, issues=issues))
        return JSONResponse({"detail": [i.message for i in issues]}, status_code=400)

    app.include_router(fhir_router)
    app.include_router(registry_router)
    app.include_router(coding_router)
    app.include_router(pages.router)
    app.include_router(completion_pages.router)
    app.include_router(coding_pages.router)
    app.include_router(registry_pages.router)
    app.mount("/static", StaticFiles(directory=pages.STATIC_DIR), name="static")
    return app
