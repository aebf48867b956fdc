"""Invoices from settled postings: one per participant per supplier and period, and their JSON form.

The journal holds, per (participant, meter, component@payee), the signed amount of the period in
whole cents and the inputs of every posting (quantity, unit, role, supplier, plan). An invoice line
is that amount; its section is the plan component's payee role; VAT comes from the VAT postings,
so the invoices of a period sum exactly to what the ledger says the participants owe.
"""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from datetime import date
from decimal import Decimal
from typing import Any

from kwartier.billing.model import (
    Address,
    Buyer,
    Informative,
    Invoice,
    InvoiceLine,
    Seller,
    VatBreakdown,
)
from kwartier.money import NANO_PER_CENT

SECTION_ORDER = ("supplier", "grid", "tax", "community", "aggregator")


@dataclass
class Statement:
    """What the journal says one participant owes one supplier for a period, line by line."""

    participant: str
    supplier: str
    lines: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)  # (meter, comp@payee) -> line
    vat: dict[Decimal, int] = field(default_factory=dict)  # rate -> cents

    def key(self) -> str:
        """A digest of the amounts: two statements with the same key bill the same."""
        doc = {"lines": sorted((m, c, v["cents"]) for (m, c), v in self.lines.items()),
               "vat": sorted((str(r), c) for r, c in self.vat.items())}
        return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()


def statements(rows: list[dict[str, Any]]) -> dict[tuple[str, str], Statement]:
    """Group a period's journal rows (as mappings) into statements per (participant, supplier)."""
    out: dict[tuple[str, str], Statement] = {}
    inputs_of: dict[tuple[str, str, str, str], list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        sign = 1 if r["debit"] == f"participant:{r['participant']}" else -1
        cents = sign * int(r["amount_nano"]) // NANO_PER_CENT
        comp = str(r["component"])
        inputs = r["inputs"] or {}
        if comp.startswith("vat:"):
            _, supplier, rate = comp.split(":", 2)
            st = out.setdefault((r["participant"], supplier), Statement(r["participant"], supplier))
            st.vat[Decimal(rate)] = st.vat.get(Decimal(rate), 0) + cents
            continue
        supplier = inputs.get("supplier") or (inputs.get("corrects") or {}).get("supplier")
        if supplier is None:
            continue  # postings from before suppliers were recorded cannot be invoiced
        st = out.setdefault((r["participant"], supplier), Statement(r["participant"], supplier))
        line = st.lines.setdefault((r["connection"], comp), {"cents": 0})
        line["cents"] += cents
        latest = {k: v for k, v in inputs.items() if k not in ("corrects", "changed")}
        if "quantity" in latest:
            line["inputs"] = latest
        inputs_of[(r["participant"], supplier, r["connection"], comp)].append(latest)
    for (participant, supplier, meter, comp), history in inputs_of.items():
        line = out[(participant, supplier)].lines[(meter, comp)]
        line["inputs_hash"] = hashlib.sha256(json.dumps(history, sort_keys=True).encode()).hexdigest()
    return out


def build_invoice(st: Statement, *, number: str, kind: str, issue_date: date, due_days: int, period: str,
                  period_start: date, period_end: date, seller: Seller, buyer: Buyer, labels: dict[str, str],
                  products: list[str], corrects: str | None = None, sign: int = 1) -> Invoice:
    """An Invoice of the statement (``sign=-1`` negates it, for a credit note)."""
    lines = []
    order = {c: i for i, c in enumerate(labels)}  # the plan's component order
    ordered = sorted(st.lines.items(), key=lambda kv: (
        SECTION_ORDER.index(kv[1].get("inputs", {}).get("role", "supplier")), kv[0][0] or "",
        order.get(kv[0][1].split("@")[0], len(order)), kv[0][1]))
    for i, ((meter, comp), v) in enumerate(ordered, start=1):
        inputs = v.get("inputs", {})
        qty = Decimal(inputs.get("quantity", "0"))
        cents = sign * v["cents"]
        component = comp.split("@")[0]
        vat_able = bool(inputs.get("vat", True))
        rate = next(iter(st.vat), Decimal("0.21")) if vat_able else Decimal(0)
        lines.append(InvoiceLine(
            line_id=str(i), section=inputs.get("role", "supplier"), component=component,
            label=labels.get(component, component), meter=meter, quantity=sign * qty, unit=inputs.get("unit", ""),
            unit_price=Decimal(inputs["unit_price"]) if "unit_price" in inputs else (
                (Decimal(v["cents"]) / 100 / qty).quantize(Decimal("0.000001")) if qty else None),
            amount_cents=cents, vat_category="S" if vat_able else "E", vat_rate=rate,
            inputs_hash=v.get("inputs_hash", "")))
    vat = tuple(
        VatBreakdown("S", rate, sum(ln.amount_cents for ln in lines if ln.vat_category == "S" and ln.vat_rate == rate),
                     sign * cents)
        for rate, cents in sorted(st.vat.items())
    )
    exempt = [ln.amount_cents for ln in lines if ln.vat_category == "E"]
    if exempt:
        vat = (*vat, VatBreakdown("E", Decimal(0), sum(exempt), 0))
    meters = tuple(sorted({ln.meter for ln in lines if ln.meter}))
    return Invoice(
        number=number, kind=kind, issue_date=issue_date, due_date=date.fromordinal(issue_date.toordinal() + due_days),
        period=period, period_start=period_start, period_end=period_end, seller=seller, buyer=buyer,
        connections=meters, product=", ".join(products), lines=tuple(lines), vat=vat,
        payment_reference=number.replace("-", ""), references=corrects,
    )


def _encode(o: Any) -> Any:
    if isinstance(o, Decimal):
        return str(o)
    if isinstance(o, date):
        return o.isoformat()
    if isinstance(o, tuple | list):
        return [_encode(x) for x in o]
    if isinstance(o, dict):
        return {k: _encode(v) for k, v in o.items()}
    return o


def invoice_to_json(invoice: Invoice, informative: Informative | None) -> dict[str, Any]:
    return {"invoice": _encode(asdict(invoice)), "informative": _encode(asdict(informative)) if informative else None}


def invoice_from_json(doc: dict[str, Any]) -> tuple[Invoice, Informative | None]:
    d = doc["invoice"]
    inv = Invoice(
        number=d["number"], kind=d["kind"], issue_date=date.fromisoformat(d["issue_date"]),
        due_date=date.fromisoformat(d["due_date"]), period=d["period"],
        period_start=date.fromisoformat(d["period_start"]), period_end=date.fromisoformat(d["period_end"]),
        seller=Seller(d["seller"]["id"], d["seller"]["name"], d["seller"]["vat_id"], Address(**d["seller"]["address"]),
                      d["seller"].get("iban")),
        buyer=Buyer(d["buyer"]["id"], d["buyer"]["name"], d["buyer"]["email"], d["buyer"]["locale"],
                    Address(**d["buyer"]["address"])),
        connections=tuple(d["connections"]), product=d["product"],
        lines=tuple(InvoiceLine(
            line_id=ln["line_id"], section=ln["section"], component=ln["component"], label=ln["label"],
            meter=ln["meter"], quantity=Decimal(ln["quantity"]), unit=ln["unit"],
            unit_price=Decimal(ln["unit_price"]) if ln["unit_price"] is not None else None,
            amount_cents=int(ln["amount_cents"]), vat_category=ln["vat_category"], vat_rate=Decimal(ln["vat_rate"]),
            inputs_hash=ln["inputs_hash"]) for ln in d["lines"]),
        vat=tuple(VatBreakdown(v["category"], Decimal(v["rate"]), int(v["base_cents"]), int(v["vat_cents"]))
                  for v in d["vat"]),
        payment_reference=d["payment_reference"], references=d["references"], currency=d["currency"],
        note=d.get("note", ""),
    )
    info = None
    if doc.get("informative"):
        i = doc["informative"]
        dec = lambda k: Decimal(i[k]) if i[k] is not None else None  # noqa: E731
        info = Informative(
            import_kwh=Decimal(i["import_kwh"]), export_kwh=Decimal(i["export_kwh"]),
            average_eur_per_kwh=dec("average_eur_per_kwh"),
            community_average_eur_per_kwh=dec("community_average_eur_per_kwh"), percentile=i["percentile"],
            reference_plan=i["reference_plan"], reference_total_cents=i["reference_total_cents"],
            no_netting_total_cents=i["no_netting_total_cents"],
            daily_cost_cents=tuple((date.fromisoformat(a), int(b)) for a, b in i["daily_cost_cents"]),
        )
    return inv, info
