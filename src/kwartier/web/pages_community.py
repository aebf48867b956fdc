"""The community page: the rules in force, the last month's sharing and KPIs, and the proposals to vote on."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import RedirectResponse, Response

from kwartier.web import api, i18n
from kwartier.web.auth import User
from kwartier.web.page import CSRF_COOKIE, language, last_settled, local_time, not_found, page_user, render, to_login

router = APIRouter(include_in_schema=False)
ROLES = ("participant", "operator")


@router.get("/community")
def community(request: Request) -> Response:
    user = page_user(request)
    if user is None:
        return to_login()
    if user.role not in ROLES:
        return not_found(request, user)
    return _page(request, user, language(request))


def _page(request: Request, user: User, lang: str, status: int = 200, message: str | None = None) -> Response:
    views = request.app.state.views
    data = views.get("community", (lang,), lambda: _community(request, user, lang))
    sharing = data["sharing"]
    if sharing is not None and user.role == "participant":  # a member sees its own row and the totals only
        sharing = {**sharing, "members": [m for m in sharing["members"] if m["participant"] == user.participant]}
    return render(request, "community.j2", user, status=status, message=message, rules=data["rules"],
                  sharing=sharing, proposals=data["proposals"], me=user.participant)


def _community(request: Request, user: User, lang: str) -> dict[str, Any]:
    """What every member may see: the rulebook in force, the last settled month's sharing, the proposals."""
    from kwartier.services.governance import show
    from kwartier.services.sharing import SharingServiceError, compute_sharing

    engine = request.app.state.engine
    ctx = api.context(engine, user)  # for the community's time zone: nothing of the user's own is read
    state = show(engine)
    rulebook = state["in_force"]["rulebook"]
    rules = {"version": state["in_force"]["version"],
             "since": local_time(datetime.fromisoformat(state["in_force"]["effective_from"]), ctx.tz),
             "sharing": rulebook["sharing"]["rule"], "price": rulebook["price"]["rule"],
             "quorum": rulebook["governance"]["quorum"], "majority": rulebook["governance"]["majority"]}
    period = last_settled(engine)
    sharing = None
    if period is not None:

        def share() -> Any:
            try:
                return compute_sharing(engine, period)
            except (SharingServiceError, ValueError):
                return None

        # The month's sharing depends on its readings, prices, the definition and the rules, not on votes
        # or bills: watching only those, it survives the writes a vote makes.
        result = request.app.state.views.get("sharing", (period, state["in_force"]["digest"]), share,
                                             per_quarter=False, watch=("readings", "prices", "entities"))
        if result is not None:
            doc, k = result.to_json(), result.kpis

            def kwh(text: object) -> str:
                return i18n.number(Decimal(str(text)), lang, 1)

            def pct(v: Decimal | None) -> str:
                return "–" if v is None else i18n.number(v * 100, lang, 1) + " %"

            sharing = {"period": period, "production": kwh(doc["production_kwh"]),
                       "consumption": kwh(doc["consumption_kwh"]), "shared": kwh(doc["shared_kwh"]),
                       "self_consumption": pct(k.self_consumption), "self_sufficiency": pct(k.self_sufficiency),
                       "peak_kw": i18n.number(k.peak_import_kw, lang, 1),
                       "gini": "–" if k.savings_gini is None else i18n.number(k.savings_gini, lang, 2),
                       "members": [{"participant": m["participant"], **{f: kwh(m[f + "_kwh"]) for f in (
                           "production", "surplus", "consumption", "community", "complement")}}
                           for m in doc["members"]]}  # type: ignore[attr-defined]
    proposals = [{**p, "closes": local_time(datetime.fromisoformat(p["closes_at"]), ctx.tz),
                  "effective": local_time(datetime.fromisoformat(p["effective_from"]), ctx.tz)}
                 for p in reversed(state["proposals"])]
    return {"rules": rules, "sharing": sharing, "proposals": proposals}


@router.post("/community/vote")
def vote(request: Request, proposal: Annotated[int, Form()], choice: Annotated[str, Form()],
         csrf: Annotated[str, Form()] = "") -> Response:
    from kwartier.community.governance import GovernanceError
    from kwartier.services.governance import vote as cast

    user = page_user(request)
    if user is None:
        return to_login()
    if user.role != "participant" or user.participant is None:
        return not_found(request, user)
    lang = language(request)
    if not request.app.state.signer.csrf_ok(request.cookies.get(CSRF_COOKIE), csrf):
        return _page(request, user, lang, status=400, message=i18n.t("bad_csrf", lang))
    try:
        cast(request.app.state.engine, proposal, user.participant, choice, now=datetime.now(UTC))
    except (GovernanceError, LookupError, ValueError) as exc:
        return _page(request, user, lang, status=409, message=str(exc))
    return RedirectResponse("/community", status_code=303)
