"""Public price feeds for home automation: ``GET /api/v1/tariff/{plan}/evcc`` (evcc's custom tariff).

Public prices only: no personal data, no login. The plan is one of the community's contracts or a
built-in plan; prices are the store's, as known now (today and tomorrow, local days of the plan).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Query, Request
from pydantic import BaseModel
from sqlalchemy import Engine

from kwartier.community.definition import DefinitionError
from kwartier.services.community import current_definition
from kwartier.tariffs.plan import PlanError
from kwartier.timegrid import DEFAULT_TZ
from kwartier.web.api import ERRORS, Context, find_plan

router = APIRouter(prefix="/api/v1/tariff", tags=["feeds"], responses={k: ERRORS[k] for k in (404, 422)})


class Rate(BaseModel):
    start: str
    end: str
    value: float


def public_context(engine: Engine) -> Context:
    """The community as anyone sees it: its plans and zone, no connections (no personal data)."""
    try:
        defn = current_definition(engine)
    except (DefinitionError, PlanError):
        return Context(None, frozenset(), (), DEFAULT_TZ, "NL")
    return Context(defn, frozenset(), (), defn.community.timezone, defn.community.zone)


@router.get("/{plan}/evcc", response_model=list[Rate])
def evcc_tariff(
    request: Request,
    plan: str,
    direction: Annotated[Literal["grid", "feedin"], Query(description="grid: price of a kWh taken; feedin: "
                                                                      "pay for a kWh fed in")] = "grid",
    vat: Annotated[bool, Query(description="include VAT (the plan's rate)")] = False,
    forecast: Annotated[bool, Query(description="include forecast quarters, not only fixed prices")] = False,
) -> Any:
    """Quarter-hour prices of today and tomorrow as evcc's ``custom`` tariff reads them:
    ``[{"start", "end", "value"}]`` with UTC times and the value in EUR per kWh.
    """
    from kwartier.services.steering import day_quarter_prices
    from kwartier.steer.publish import evcc_rates

    ctx = public_context(request.app.state.engine)
    loaded = find_plan(ctx, plan)  # a plan of the community's contracts, else a built-in one
    if loaded is None:
        raise HTTPException(status_code=404, detail="plan not found")
    quarters = day_quarter_prices(request.app.state.engine, loaded, ctx.zone, datetime.now(UTC), 2, direction,
                                  with_vat=vat, forecasts=forecast)
    return evcc_rates(quarters)
