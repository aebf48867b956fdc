"""The bill run: invoices for a settled month, numbered gaplessly, corrected by credit notes, rendered.

For each (participant, supplier) with postings in the period:
- no invoice yet: issue one;
- an invoice whose amounts still match the journal: nothing;
- the journal moved (a correction was settled): a credit note cancelling the last invoice (it
  references it, EN 16931 BG-3) and a corrected invoice, in one transaction.

A number is taken from the supplier's series (``<PREFIX>-<YYYY>-<seq>``) in the same transaction
that stores the document, so a run killed at any moment leaves no gap and no duplicate; files
(HTML, PDF with embedded Factur-X XML, UBL XML) are written after the commit and re-written by the
next run when missing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import polars as pl
from sqlalchemy import Connection, Engine, insert, select, text, update

from kwartier.billing.documents import Statement, build_invoice, invoice_from_json, invoice_to_json, statements
from kwartier.billing.model import Address, Buyer, Informative, Invoice, Seller
from kwartier.money import format_eur
from kwartier.services.settle import parse_period
from kwartier.store import schema

DUE_DAYS = 14
REFERENCE_PLAN = "nl-fixed-2026"
NO_NETTING_PLAN = "nl-dynamic-2027"


class BillingError(ValueError):
    """A period that cannot be billed (nothing settled, unknown invoice, ...)."""


@dataclass
class BillSummary:
    period: str
    invoices: list[dict[str, object]] = field(default_factory=list)
    credit_notes: list[dict[str, object]] = field(default_factory=list)

    def to_json(self) -> dict[str, object]:
        return {"period": self.period, "invoices": self.invoices, "credit_notes": self.credit_notes}


def _prefix(supplier: str) -> str:
    return re.sub(r"[^A-Z0-9]", "", supplier.upper())[:8] or "INV"


def next_number(conn: Connection, supplier: str, year: int) -> str:
    """Take the next number of ``supplier``'s series for ``year``, inside the caller's transaction."""
    s = schema.invoice_series
    if conn.dialect.name == "postgresql":
        conn.execute(text("LOCK TABLE invoice_series IN SHARE ROW EXCLUSIVE MODE"))
    row = conn.execute(select(s.c.last_seq).where(s.c.supplier == supplier, s.c.year == year)).first()
    seq = (row[0] if row else 0) + 1
    if row:
        conn.execute(update(s).where(s.c.supplier == supplier, s.c.year == year).values(last_seq=seq))
    else:
        conn.execute(insert(s).values(supplier=supplier, year=year, last_seq=seq))
    return f"{_prefix(supplier)}-{year}-{seq:06d}"


def _journal_rows(conn: Connection, period: str) -> list[dict[str, object]]:
    j = schema.journal
    return [dict(r) for r in conn.execute(select(j).where(j.c.period == period).order_by(j.c.seq)).mappings()]


def bill(engine: Engine, period: str, out_dir: Path | None = None, *, today: date | None = None) -> BillSummary:
    """Issue the period's invoices and credit notes; write their files to ``out_dir`` when given."""
    from kwartier.services.community import current_definition

    first, end = parse_period(period)
    issue = today or datetime.now(UTC).date()
    defn = current_definition(engine)
    with engine.connect() as conn:
        owed = statements(_journal_rows(conn, period))
    if not owed:
        raise BillingError(f"nothing settled for {period}: run kwartier settle --period {period} first")
    informative = _informative(engine, defn, owed, first, end)
    summary = BillSummary(period)
    for (participant, supplier), st in sorted(owed.items()):
        with engine.begin() as conn:  # one transaction: numbers and documents together
            docs = _documents(conn, supplier, participant, period)
            current = _current_invoice(docs)
            if current is not None and current["lines_key"] == st.key():
                continue
            args = _context(defn, st, first, end, period, issue)
            if current is not None:
                original, _ = invoice_from_json(current["content"])
                note = build_invoice(st_of(original), number=next_number(conn, supplier, issue.year),
                                     kind="credit_note", corrects=original.number, sign=-1, **args)
                _valid(note)
                _store(conn, note, None, current["lines_key"])
            inv = build_invoice(st, number=next_number(conn, supplier, issue.year), kind="invoice", **args)
            _valid(inv)  # an invoice that is not a valid EN 16931 e-invoice takes no number
            _store(conn, inv, informative.get(participant), st.key())
        if out_dir:  # after the commit: a crash here leaves a numbered invoice whose files the next run writes
            if current is not None:
                write_files(note, None, out_dir)
            write_files(inv, informative.get(participant), out_dir)
    with engine.connect() as conn:
        for doc in _period_documents(conn, period):
            invoice, info = invoice_from_json(doc["content"])
            files = write_files(invoice, info, out_dir) if out_dir else {}
            entry = {"number": invoice.number, "participant": invoice.buyer.id, "supplier": invoice.seller.id,
                     "net_total": format_eur(invoice.net_total_cents), "vat": format_eur(invoice.vat_total_cents),
                     "total": format_eur(invoice.total_cents), "pdf": files.get("pdf"), "xml": files.get("xml")}
            if invoice.kind == "credit_note":
                summary.credit_notes.append({**entry, "corrects": invoice.references})
            else:
                summary.invoices.append(entry)
    return summary


def _valid(invoice: Invoice) -> None:
    """Refuse, before it is numbered and stored, a document that is not a valid EN 16931 e-invoice."""
    from kwartier.billing.einvoice import EInvoiceError, to_cii

    try:
        to_cii(invoice)
    except EInvoiceError as exc:
        raise BillingError(f"{exc}; fix the community file (kwartier community load) and run again") from None


def st_of(invoice: Invoice) -> Statement:
    """The statement an issued invoice stated (to credit exactly that)."""
    st = Statement(invoice.buyer.id, invoice.seller.id)
    for ln in invoice.lines:
        st.lines[(ln.meter or "", ln.component)] = {
            "cents": ln.amount_cents, "inputs_hash": ln.inputs_hash,
            "inputs": {"role": ln.section, "quantity": str(ln.quantity), "unit": ln.unit,
                       "vat": ln.vat_category == "S",
                       **({"unit_price": str(ln.unit_price)} if ln.unit_price is not None else {})}}
    for v in invoice.vat:
        if v.category == "S":
            st.vat[v.rate] = v.vat_cents
    return st


def _documents(conn: Connection, supplier: str, participant: str, period: str) -> list[dict[str, object]]:
    i = schema.invoices
    return [dict(r) for r in conn.execute(
        select(i).where(i.c.supplier == supplier, i.c.participant == participant, i.c.period == period)
        .order_by(i.c.created_at, i.c.number)).mappings()]


def _current_invoice(docs: list[dict[str, object]]) -> dict[str, object] | None:
    credited = {d["corrects"] for d in docs if d["kind"] == "credit_note"}
    valid = [d for d in docs if d["kind"] == "invoice" and d["number"] not in credited]
    return valid[-1] if valid else None


def _period_documents(conn: Connection, period: str) -> list[dict[str, object]]:
    i = schema.invoices
    return [dict(r) for r in conn.execute(select(i).where(i.c.period == period).order_by(i.c.number)).mappings()]


def _store(conn: Connection, invoice: Invoice, info: Informative | None, key: str) -> None:
    conn.execute(insert(schema.invoices).values(
        number=invoice.number, supplier=invoice.seller.id, participant=invoice.buyer.id, period=invoice.period,
        kind=invoice.kind, corrects=invoice.references, issue_date=invoice.issue_date,
        net_cents=invoice.net_total_cents, vat_cents=invoice.vat_total_cents, total_cents=invoice.total_cents,
        lines_key=key, content=invoice_to_json(invoice, info), created_at=datetime.now(UTC)))


def _context(defn, st: Statement, first: date, end: date, period: str, issue: date) -> dict[str, object]:  # type: ignore[no-untyped-def]
    party = defn.party(st.supplier)
    person = defn.participant(st.participant)
    country = defn.community.zone[:2] if defn.community.zone[:2].isalpha() else "NL"
    labels: dict[str, str] = {}
    products = []
    for c in defn.spec.contracts:
        if c.supplier == st.supplier and defn.participant_of(c.target).id == st.participant:
            plan = defn.plans[c.id]
            products.append(plan.plan.name)
            for comp in plan.components:
                labels.setdefault(comp.spec.id, comp.spec.label_in(person.locale))
    from kwartier.community.pricing import COMPONENTS, component_label

    for comp in COMPONENTS:  # the community's own lines (shared energy, solidarity)
        labels.setdefault(comp, component_label(comp, person.locale))
    return {"issue_date": issue, "due_days": DUE_DAYS, "period": period, "period_start": first, "period_end": end,
            "seller": Seller(party.id, party.name, party.vat_id, Address(country)),
            "buyer": Buyer(person.id, person.name, person.email, person.locale, Address(country)),
            "labels": labels, "products": sorted(set(products))}


def _informative(engine: Engine, defn, owed: dict[tuple[str, str], Statement], first: date, end: date  # type: ignore[no-untyped-def]
                 ) -> dict[str, Informative]:
    """Per participant: average price paid, the community's, the percentile, and two what-ifs."""
    from kwartier.services.prices import stored_prices
    from kwartier.tariffs.cost import cost
    from kwartier.tariffs.plan import load_plan
    from kwartier.timegrid import local_period_bounds

    tz = defn.community.timezone
    start, stop = local_period_bounds(first, end, tz)
    market = stored_prices(engine, defn.community.zone, start - timedelta(days=1), stop)
    totals: dict[str, int] = {}
    for (participant, _), st in owed.items():
        totals[participant] = totals.get(participant, 0) + sum(v["cents"] for v in st.lines.values()) + sum(
            st.vat.values())
    out: dict[str, Informative] = {}
    per_kwh: dict[str, Decimal] = {}
    energy: dict[str, tuple[pl.DataFrame, Decimal, Decimal]] = {}
    for participant in totals:
        meters = [c.ean for c in defn.spec.connections if c.participant == participant]
        frame = _readings_frame(engine, meters, start - timedelta(days=400), stop)
        inside = frame.filter(pl.col("interval_start") >= start)
        imp = Decimal(int(inside["import_wh"].sum())).scaleb(-3)
        exp = Decimal(int(inside["export_wh"].sum())).scaleb(-3)
        energy[participant] = (frame, imp, exp)
        if imp:
            per_kwh[participant] = (Decimal(totals[participant]) / 100 / imp).quantize(Decimal("0.0001"))
    community = (Decimal(sum(totals.values())) / 100 / sum(e[1] for e in energy.values())).quantize(
        Decimal("0.0001")) if any(e[1] for e in energy.values()) else None
    for participant, (frame, imp, exp) in energy.items():
        mine = per_kwh.get(participant)
        pct = (round(100 * sum(1 for v in per_kwh.values() if v > mine) / max(1, len(per_kwh) - 1))
               if mine is not None and len(per_kwh) > 1 else None)
        what_if = {}
        for plan_id in (REFERENCE_PLAN, NO_NETTING_PLAN):
            try:
                what_if[plan_id] = cost(load_plan(plan_id), frame, market, first, end, allow_gaps=True).total_cents
            except ValueError:
                what_if[plan_id] = None
        daily = _daily_spot_cents(frame.filter(pl.col("interval_start") >= start), market, tz)
        out[participant] = Informative(imp, exp, mine, community, pct, REFERENCE_PLAN, what_if[REFERENCE_PLAN],
                                       what_if[NO_NETTING_PLAN], daily)
    return out


def _readings_frame(engine: Engine, meters: list[str], start: datetime, stop: datetime) -> pl.DataFrame:
    """A participant's readings summed over its connections, per quarter (main meters only)."""
    from kwartier.services.settle import _readings

    with engine.connect() as conn:
        frame = _readings(conn, meters, start, stop)
    return (frame.group_by("interval_start", "resolution")
            .agg(pl.col("import_wh").sum(), pl.col("export_wh").sum(), pl.lit("actual").alias("status"))
            .sort("interval_start"))


def _daily_spot_cents(frame: pl.DataFrame, market: pl.DataFrame, tz: str) -> tuple[tuple[date, int], ...]:
    """Per local day: energy taken x the day-ahead price minus energy fed in x the same price, in cents."""
    from kwartier.money import nano_to_cents
    from kwartier.tariffs.compose import align, price_series_nano

    if frame.is_empty():
        return ()
    priced = frame.join(align(frame.select("interval_start", "resolution"), price_series_nano(market), "p"),
                        on="interval_start")
    daily = (priced.with_columns(day=pl.col("interval_start").dt.convert_time_zone(tz).dt.date(),
                                 pico=(pl.col("import_wh") - pl.col("export_wh")) * pl.col("p"))
             .group_by("day").agg(pl.col("pico").sum()).sort("day"))
    return tuple((d, nano_to_cents(int(p) // 1000)) for d, p in daily.iter_rows())


def write_files(invoice: Invoice, info: Informative | None, out_dir: Path) -> dict[str, str]:
    """HTML, PDF (Factur-X: PDF/A-3 with the CII XML) and UBL XML of a document; existing files are kept."""
    from kwartier.billing.einvoice import facturx_pdf, to_ubl
    from kwartier.billing.render import render_html, render_pdf

    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise BillingError(f"cannot create the invoice folder {out_dir}: {exc.strerror or exc}") from None
    html_path = out_dir / f"{invoice.number}.html"
    pdf_path = out_dir / f"{invoice.number}.pdf"
    xml_path = out_dir / f"{invoice.number}.ubl.xml"
    if not html_path.exists() or not pdf_path.exists():
        html = render_html(invoice, info)
        atomic_write(html_path, html.encode())
        atomic_write(pdf_path, facturx_pdf(render_pdf(html), invoice))
    if not xml_path.exists():
        atomic_write(xml_path, to_ubl(invoice))
    return {"html": str(html_path), "pdf": str(pdf_path), "xml": str(xml_path)}


def atomic_write(path: Path, data: bytes) -> None:
    """Write through a ``.part`` file renamed into place: no reader sees half a file, a failure leaves none."""
    tmp = path.with_suffix(path.suffix + ".part")
    try:
        tmp.write_bytes(data)
        tmp.replace(path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise BillingError(f"cannot write {path}: {exc.strerror or exc}; the invoice is issued and kept, "
                           "run the bill again once there is room to write its files") from None


def find(engine: Engine, number: str) -> tuple[Invoice, Informative | None]:
    i = schema.invoices
    with engine.connect() as conn:
        row = conn.execute(select(i.c.content).where(i.c.number == number)).first()
    if row is None:
        raise BillingError(f"no invoice {number!r} (see kwartier invoice list)")
    return invoice_from_json(row[0])


def listing(engine: Engine, participant: str | None = None) -> list[dict[str, object]]:
    i = schema.invoices
    stmt = select(i.c.number, i.c.kind, i.c.participant, i.c.supplier, i.c.period, i.c.issue_date, i.c.corrects,
                  i.c.total_cents).order_by(i.c.number)
    if participant:
        stmt = stmt.where(i.c.participant == participant)
    with engine.connect() as conn:
        return [{"number": r.number, "kind": r.kind, "participant": r.participant, "supplier": r.supplier,
                 "period": r.period, "issue_date": r.issue_date.isoformat(), "corrects": r.corrects,
                 "total": format_eur(int(r.total_cents))} for r in conn.execute(stmt)]
