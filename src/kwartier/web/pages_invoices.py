"""The invoices pages: the list, and each invoice as HTML, PDF and UBL e-invoice."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import HTMLResponse, Response

from kwartier.billing.documents import invoice_from_json
from kwartier.web import api, i18n
from kwartier.web.auth import User
from kwartier.web.page import (
    language,
    not_found,
    page_user,
    render,
    to_login,
)

router = APIRouter(include_in_schema=False)


@router.get("/invoices")
def invoices(request: Request) -> Response:
    user = page_user(request)
    if user is None:
        return to_login()
    lang = language(request)

    def rows() -> list[dict[str, Any]]:
        return [{**r, "total": i18n.money(int(r["total_cents"]), lang), "issued": i18n.day(r["issue_date"], lang),
                 "kind": i18n.t(r["kind"], lang) if r["kind"] in i18n.TEXT else r["kind"]}
                for r in api.invoice_rows(request.app.state.engine, user)]

    return render(request, "invoices.j2", user, rows=request.app.state.views.get(
        "invoices", (user.role, user.participant, lang), rows, per_quarter=False))


def _own(request: Request, number: str) -> tuple[User | None, dict[str, Any] | None]:
    user = page_user(request)
    if user is None:
        return None, None
    try:
        return user, api.own_invoice(request, user, number)
    except HTTPException:
        return user, None


@router.get("/invoices/{number}.pdf")
def invoice_pdf(request: Request, number: str) -> Response:
    user, content = _own(request, number)
    if user is None:
        return to_login()
    if content is None:
        return not_found(request, user)
    return Response(api.invoice_pdf_bytes(content), media_type="application/pdf",
                    headers={"Content-Disposition": f'attachment; filename="{number}.pdf"'})


@router.get("/invoices/{number}.xml")
def invoice_xml(request: Request, number: str) -> Response:
    from kwartier.billing.einvoice import to_ubl

    user, content = _own(request, number)
    if user is None:
        return to_login()
    if content is None:
        return not_found(request, user)
    return Response(to_ubl(invoice_from_json(content)[0]), media_type="application/xml",
                    headers={"Content-Disposition": f'attachment; filename="{number}.ubl.xml"'})


@router.get("/invoices/{number}")
def invoice_html(request: Request, number: str) -> Response:
    from kwartier.billing.render import render_html

    user, content = _own(request, number)
    if user is None:
        return to_login()
    if content is None:
        return not_found(request, user)
    invoice, info = invoice_from_json(content)
    return HTMLResponse(render_html(invoice, info, language(request)),
                        headers={"X-Content-Type-Options": "nosniff", "Cache-Control": "no-store"})


