"""The review web application (FastAPI, Jinja2 templates, a little plain JavaScript).

Pages and images are addressed by a patient's and a cell's position in the folder's lists, never by a path:
a cell route serves only a file that the folder lists, so no part of a URL reaches the disk. Pages escape
every name (Jinja2 autoescape); every state-changing request carries the session's CSRF token; the decisions
database is the only thing written."""

from __future__ import annotations

import hmac
import io
import secrets
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from fastapi import FastAPI, Form, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, PackageLoader, select_autoescape
from starlette.middleware.trustedhost import TrustedHostMiddleware

from ..explain.evidence import share_text
from .agreement import agreements
from .export import export_rows
from .folder import ReviewCell, ReviewFolder, ReviewPatient
from .saliency import SaliencyMaps
from .store import CELL_FLAGS, CLEARED, DIAGNOSIS_CONFIDENCE, DecisionStore, ModelCall
from .worklist import FILTERS, SORTS, expert_heading, expert_value, ordered

BROWSER_IMAGES = {
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".png": "image/png",
    ".gif": "image/gif",
    ".webp": "image/webp",
    ".bmp": "image/bmp",
}
REVIEWER_COOKIE = "smearmil_reviewer"


def _templates() -> Environment:
    env = Environment(loader=PackageLoader("smearmil.review", "templates"), autoescape=select_autoescape(["html"]))
    env.filters["share"] = share_text
    env.filters["expert_value"] = expert_value
    return env


def _cell_label(cell: ReviewCell, toward: str) -> str:
    if cell.share is not None:
        return f"{share_text(cell.share)} toward {toward}"
    if cell.attention is not None:
        return f"attention {cell.attention:.2f}"
    return ""


def create_app(folder: ReviewFolder, store: DecisionStore, reviewer: str, hosts: list[str] | None = None) -> FastAPI:
    """The application serving ``folder``'s cohort and recording decisions in ``store``; ``reviewer``: the
    name a form starts with; ``hosts``: the Host headers accepted (DNS rebinding)."""
    app = FastAPI(title="smearmil review", docs_url=None, redoc_url=None, openapi_url=None)
    app.add_middleware(TrustedHostMiddleware, allowed_hosts=hosts or ["127.0.0.1", "localhost", "testserver"])
    env = _templates()

    @app.exception_handler(RequestValidationError)
    def invalid(request: Request, error: RequestValidationError) -> Response:  # a malformed URL names nothing
        status = 404 if request.method == "GET" else 400
        return Response("not found" if status == 404 else "malformed form", status_code=status)

    token = secrets.token_urlsafe(32)
    positive = folder.class_names[1] if len(folder.class_names) == 2 else ""
    labels = {p.id: p.label for p in folder.patients}
    saliency = SaliencyMaps(folder)

    def page(name: str, request: Request, **context: Any) -> HTMLResponse:
        who = request.cookies.get(REVIEWER_COOKIE) or reviewer
        html = env.get_template(name).render(folder=folder, csrf=token, reviewer=who, **context)
        return HTMLResponse(html, headers={"X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer"})

    def patient_at(index: int) -> ReviewPatient:
        if not 0 <= index < len(folder.patients):
            raise HTTPException(404, "no such patient")
        return folder.patients[index]

    def check(csrf: str) -> None:
        if not hmac.compare_digest(csrf.encode(), token.encode()):
            raise HTTPException(403, "the form's CSRF token is missing or stale: reload the page")

    def name_of(text: str) -> str:
        name = " ".join(text.split())[:80]
        if not name:
            raise HTTPException(400, "give a reviewer name")
        return name

    def model_call(p: ReviewPatient) -> ModelCall:
        return ModelCall(p.call, p.probability, p.uncertain)

    def back(p: ReviewPatient, query: str, name: str) -> RedirectResponse:
        response = RedirectResponse(f"/patient/{p.index}{'?' + query if query else ''}", status_code=303)
        response.set_cookie(REVIEWER_COOKIE, name, httponly=True, samesite="strict")
        return response

    @app.get("/", response_class=HTMLResponse)
    def worklist(request: Request, sort: str = "uncertain", show: str = "all") -> HTMLResponse:
        sort = sort if sort in SORTS else "uncertain"
        show = show if show in FILTERS else "all"
        decisions = store.latest_decisions()
        by_patient: dict[str, list[dict[str, Any]]] = {}
        for d in decisions:
            by_patient.setdefault(d["patient"], []).append(d)
        rows = ordered(folder, decisions, sort, show)
        experts = sorted({k for p in folder.patients for k in p.experts})
        return page(
            "worklist.html",
            request,
            rows=rows,
            decisions=by_patient,
            experts=experts,
            headings={e: expert_heading(e, positive, folder.model_attributes) for e in experts},
            attribute_names=folder.attribute_names,
            attribute_values={p.id: folder.attribute_values(p) for p in rows},
            sort=sort,
            show=show,
            sorts=SORTS,
            filters=FILTERS,
            query=urlencode({"sort": sort, "show": show}),
            agreement=agreements(decisions, labels, folder.class_names),
        )

    @app.get("/patient/{index}", response_class=HTMLResponse)
    def patient(request: Request, index: int, sort: str = "uncertain", show: str = "all") -> HTMLResponse:
        p = patient_at(index)
        order = ordered(folder, store.latest_decisions(), sort if sort in SORTS else "uncertain", show)
        position = next((i for i, q in enumerate(order) if q.index == p.index), None)
        neighbours = (
            order[position - 1] if position else None,
            order[position + 1] if position is not None and position + 1 < len(order) else None,
        )
        flags: dict[str, list[dict[str, Any]]] = {}
        for f in store.current_flags(p.id):
            flags.setdefault(f["cell"], []).append(f)
        return page(
            "patient.html",
            request,
            p=p,
            headings={e: expert_heading(e, positive, folder.model_attributes) for e in p.experts},
            cells=[(i, c, _cell_label(c, p.call if c.share is not None else "")) for i, c in enumerate(p.cells)],
            flags=flags,
            attributes=folder.attributes(p),
            evidence=folder.evidence(p),
            decisions=store.latest_decisions(p.id),
            history=store.history(p.id),
            previous=neighbours[0],
            next=neighbours[1],
            position=position,
            total=len(order),
            query=urlencode({"sort": sort, "show": show}),
            confidences=DIAGNOSIS_CONFIDENCE,
            cell_flags=CELL_FLAGS,
            cleared=CLEARED,
            saliency=saliency,
        )

    @app.get("/cell/{index}/{cell}")
    async def cell_image(index: int, cell: int) -> Response:  # a cell is a few kB: read at once, no thread hop
        p = patient_at(index)
        if not 0 <= cell < len(p.cells):
            raise HTTPException(404, "no such cell")
        path = p.cells[cell].file
        if not path.is_file():
            raise HTTPException(404, f"cell image {path.name} is gone from the data set")
        headers = {"Cache-Control": "private, max-age=3600", "X-Content-Type-Options": "nosniff"}
        suffix = path.suffix.lower()
        if suffix in BROWSER_IMAGES:
            return Response(path.read_bytes(), media_type=BROWSER_IMAGES[suffix], headers=headers)
        return Response(_png(path), media_type="image/png", headers=headers)  # TIFF: a browser cannot show it

    @app.get("/cell/{index}/{cell}/saliency")
    def cell_saliency(index: int, cell: int) -> Response:  # sync: computed in a worker thread
        p = patient_at(index)
        if not 0 <= cell < len(p.cells) or not saliency.available:
            raise HTTPException(404, "no such cell" if saliency.available else saliency.reason)
        found = saliency.png(p, cell)
        if found is None:
            raise HTTPException(404, "this cell's saliency cannot be computed (its image or the data set is gone)")
        headers = {"Cache-Control": "private, max-age=3600", "X-Content-Type-Options": "nosniff"}
        return Response(found, media_type="image/png", headers=headers)

    @app.post("/patient/{index}/decision")
    def decide(
        index: int,
        csrf: str = Form(""),
        reviewer_name: str = Form("", alias="reviewer"),
        diagnosis: str = Form(...),
        confidence: str = Form("medium"),
        comment: str = Form(""),
        query: str = Form(""),
    ) -> RedirectResponse:
        check(csrf)
        p = patient_at(index)
        if diagnosis not in folder.class_names:
            raise HTTPException(400, f"diagnosis {diagnosis!r}: choose one of {', '.join(folder.class_names)}")
        if confidence not in DIAGNOSIS_CONFIDENCE:
            raise HTTPException(400, f"confidence {confidence!r}: choose one of {', '.join(DIAGNOSIS_CONFIDENCE)}")
        name = name_of(reviewer_name)
        store.decide(name, p.id, diagnosis, confidence, comment.strip()[:4000], model_call(p))
        return back(p, query, name)

    @app.post("/patient/{index}/flag")
    def flag(
        index: int,
        csrf: str = Form(""),
        reviewer_name: str = Form("", alias="reviewer"),
        cell: int = Form(...),
        flag: str = Form(...),
        query: str = Form(""),
    ) -> RedirectResponse:
        check(csrf)
        p = patient_at(index)
        if not 0 <= cell < len(p.cells):
            raise HTTPException(404, "no such cell")
        if flag not in (*CELL_FLAGS, CLEARED):
            raise HTTPException(400, f"flag {flag!r}: choose one of {', '.join((*CELL_FLAGS, CLEARED))}")
        name = name_of(reviewer_name)
        store.flag(name, p.id, str(p.cells[cell].file), flag, model_call(p))
        return back(p, query, name)

    @app.get("/export.csv")
    def export() -> Response:
        from ..utils.spreadsheet import csv_text

        disposition = 'attachment; filename="decisions.csv"'
        return Response(
            csv_text(export_rows(store)), media_type="text/csv", headers={"Content-Disposition": disposition}
        )

    return app


def _png(path: Path) -> bytes:
    from PIL import Image

    with Image.open(path) as image:
        buffer = io.BytesIO()
        image.convert("RGB").save(buffer, format="PNG")
    return buffer.getvalue()
