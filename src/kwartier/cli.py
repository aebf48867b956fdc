"""The ``kwartier`` command line: one command per use case, ``--json`` for machine-readable output."""

from __future__ import annotations

import json
import sys
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table
from sqlalchemy.exc import DBAPIError

from kwartier.ingest import InputRejected, formats
from kwartier.services.imports import ImportSummary, import_prices, import_readings
from kwartier.store import StoreError, open_store

app = typer.Typer(
    help="kwartier: dynamic quarter-hour electricity tariffs for local energy communities.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
import_app = typer.Typer(help="Import price and meter files (the format is detected from the content).",
                         no_args_is_help=True)
app.add_typer(import_app, name="import")
prices_app = typer.Typer(help="A plan's prices per quarter-hour: fixed or forecast, and why.", no_args_is_help=True)
app.add_typer(prices_app, name="prices")
plans_app = typer.Typer(help="Tariff plans: the built-in ones and your own TOML files.", no_args_is_help=True)
app.add_typer(plans_app, name="plans")

# Piped output (logs, CI) gets a fixed generous width instead of rich's 80-column default.
out = Console(width=None if sys.stdout.isatty() else 120)
err = Console(stderr=True, width=None if sys.stderr.isatty() else 120)

DbOption = Annotated[
    str | None,
    typer.Option("--db", help="Database URL (default: $KWARTIER_DATABASE_URL, else sqlite:///kwartier.db)."),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout.")]
FormatOption = Annotated[str | None, typer.Option("--format", help="Force a format (see `kwartier formats`).")]
WorkersOption = Annotated[int | None, typer.Option(
    "--workers", min=1, help="Server processes (default: one per CPU core, at most 4); each keeps its own page cache.")]


TzOption = Annotated[
    str | None, typer.Option("--tz", help="Time zone of naive timestamps (default: the format's own).")
]


class State:
    db: str | None = None


@app.callback()
def main(db: DbOption = None) -> None:
    """Global options."""
    State.db = db


def fail(message: str, code: int = 2) -> typer.Exit:
    err.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    return typer.Exit(code)


def store():  # type: ignore[no-untyped-def]
    """The database for this command, migrated; a clear message and exit 1 if it cannot be opened."""
    try:
        return open_store(State.db)
    except StoreError as exc:
        raise fail(str(exc), 1) from None


def _run_import(json_out: bool, work) -> None:  # type: ignore[no-untyped-def]
    try:
        engine = open_store(State.db)
        if json_out or not err.is_terminal:
            summary: ImportSummary = work(engine, None)
        else:
            with err.status("importing") as status:
                summary = work(engine, lambda msg: status.update(msg))
    except InputRejected as exc:
        raise fail(str(exc)) from None
    except StoreError as exc:
        raise fail(str(exc), 1) from None
    except DBAPIError as exc:  # e.g. the connection lost mid-transaction: rolled back, nothing stored
        raise fail(f"database error, nothing of this import was stored (run it again): "
                   f"{str(exc.orig or exc).splitlines()[0]}", 1) from None
    if json_out:
        sys.stdout.write(json.dumps(summary.to_json(), ensure_ascii=False) + "\n")
        return
    _print_summary(summary)


def _print_summary(s: ImportSummary) -> None:
    data = s.to_json()
    table = Table(show_header=False, box=None)
    what = "zone" if s.kind == "prices" else "connection"
    table.add_row(what, str(s.target))
    table.add_row("file", f"{s.file} ({s.format})")
    table.add_row("intervals", f"{s.intervals} ({data['resolution']}) {data['first']} .. {data['last']}")
    if s.kind == "prices":
        table.add_row("price range", f"{data['min_eur_per_kwh']} .. {data['max_eur_per_kwh']} EUR/kWh")
    else:
        table.add_row("energy", f"import {data['import_kwh']} kWh, export {data['export_kwh']} kWh")
        if s.registers:
            table.add_row("registers", f"{s.registers} register samples stored")
    table.add_row("stored", f"{s.counts.new} new, {s.counts.unchanged} unchanged, {s.counts.revised} revised")
    out.print(table)
    if s.anomalies:
        out.print(f"[yellow]{len(s.anomalies)} anomal{'y' if len(s.anomalies) == 1 else 'ies'} handled:[/]")
        for a in s.anomalies[:50]:
            row = f" row {a.row}" if a.row else ""
            out.print(f"  [yellow]{a.kind}[/]{row}: {a.detail}", highlight=False, soft_wrap=True)
        if len(s.anomalies) > 50:
            out.print(f"  ... and {len(s.anomalies) - 50} more (use --json for all)")


@import_app.command("prices")
def import_prices_cmd(
    file: Annotated[Path, typer.Argument(help="Price file (ENTSO-E XML/CSV, EnergyZero, easyEnergy, ...).")],
    zone: Annotated[str | None, typer.Option("--zone", help="Bidding zone (default: the file's, else NL).")] = None,
    format: FormatOption = None,
    tz: TzOption = None,
    json_out: JsonOption = False,
) -> None:
    """Import day-ahead prices; the same file twice changes nothing."""
    _run_import(json_out, lambda eng, say: import_prices(eng, file, zone=zone, format=format, tz=tz, progress=say))


@import_app.command("readings")
def import_readings_cmd(
    file: Annotated[Path, typer.Argument(help="Meter export (SlimmeMeterPortal, DSMR-reader, Fluvius, ...).")],
    connection: Annotated[str, typer.Option("--connection", help="The connection's EAN-18.")],
    format: FormatOption = None,
    tz: TzOption = None,
    json_out: JsonOption = False,
) -> None:
    """Import quarter-hour or hourly meter readings for one connection."""
    _run_import(
        json_out,
        lambda eng, say: import_readings(eng, file, connection, format=format, tz=tz, progress=say),
    )


@import_app.command("p1")
def import_p1_cmd(
    file: Annotated[Path, typer.Argument(help="One DSMR P1 telegram or a logged stream of telegrams.")],
    connection: Annotated[str, typer.Option("--connection", help="The connection's EAN-18.")],
    at: Annotated[
        str | None,
        typer.Option("--at", help="Reading time (ISO 8601 with offset) for telegrams without one (DSMR 2.2/3)."),
    ] = None,
    json_out: JsonOption = False,
) -> None:
    """Import P1 telegrams: register samples, and quarter-hour energy where the stream covers a quarter."""
    when = _aware(at, "--at") if at is not None else None
    _run_import(
        json_out,
        lambda eng, say: import_readings(eng, file, connection, format="dsmr-p1", at=when, progress=say),
    )


@app.command("formats")
def formats_cmd(json_out: JsonOption = False) -> None:
    """List the file formats kwartier reads."""
    rows = [{"name": f.name, "kind": f.kind, "description": f.description} for f in formats()]
    if json_out:
        sys.stdout.write(json.dumps(rows) + "\n")
        return
    table = Table("format", "kind", "what")
    for r in rows:
        table.add_row(r["name"], r["kind"], r["description"])
    out.print(table)


@app.command("demo")
def demo_cmd(
    folder: Annotated[Path, typer.Option("--out", help="Where the generated files go.")] = Path("kwartier-demo"),
    date_from: Annotated[str | None, typer.Option("--from", help="First local day, YYYY-MM-DD "
                                                  "(default: the first day of last month).")] = None,
    date_to: Annotated[str | None, typer.Option("--to", help="Day after the last, YYYY-MM-DD (exclusive; "
                                                "default: the first day of this month).")] = None,
    prices: Annotated[Path | None, typer.Option("--prices", help="Day-ahead price file to use (any supported "
                                                "format, zone NL); default: the synthetic price model.")] = None,
    no_serve: Annotated[bool, typer.Option("--no-serve", help="Stop after building; do not serve the portal.")]
    = False,
    host: Annotated[str, typer.Option("--host", help="Address the portal listens on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="Port the portal listens on.")] = 8000,
    workers: WorkersOption = None,
    json_out: JsonOption = False,
) -> None:
    """A Breda-like community of 90 households: build it (import, settle, bill), then serve the portal."""
    from datetime import date

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from kwartier.community.definition import DefinitionError
    from kwartier.services.billing import BillingError
    from kwartier.services.demo import DemoError, demo_steps, run_demo
    from kwartier.services.settle import SettleError
    from kwartier.tariffs.compose import MissingData

    try:
        first = date.fromisoformat(date_from) if date_from else None
        end = date.fromisoformat(date_to) if date_to else None
    except ValueError as exc:
        raise fail(f"--from/--to: {exc} (use YYYY-MM-DD)") from None
    if prices is not None and not prices.is_file():
        raise fail(f"--prices {prices}: no such file")
    bar = Progress(TextColumn("{task.description:<48}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                   console=err, disable=json_out, transient=True)
    task = bar.add_task("kwartier demo", total=demo_steps(first, end))
    seen = [0]

    def step(message: str) -> None:
        bar.update(task, description=message, advance=1 if seen[0] else 0)
        seen[0] += 1

    try:
        engine = open_store(State.db)
        with bar:
            result = run_demo(engine, folder, first=first, end=end, prices_file=prices, progress=step)
    except (InputRejected, DemoError, MissingData, SettleError, BillingError, DefinitionError) as exc:
        hint = "; the --prices file must cover the whole period" if isinstance(exc, MissingData) else ""
        raise fail(f"{exc}{hint}") from None
    except StoreError as exc:
        raise fail(str(exc), 1) from None
    result.url = "" if no_serve else f"http://{host}:{port}/"
    if json_out:
        sys.stdout.write(json.dumps(result.to_json()) + "\n")
        sys.stdout.flush()
    else:
        result.print(out)
    if not no_serve:
        _serve(engine, host, port, workers)


@plans_app.command("list")
def plans_list_cmd(json_out: JsonOption = False) -> None:
    """List the built-in plans."""
    from kwartier.tariffs.plan import builtin_ids, load_plan

    plans = [load_plan(i).plan for i in builtin_ids()]
    if json_out:
        sys.stdout.write(json.dumps([{"id": p.id, "name": p.name, "netting": p.netting,
                                      "description": p.description} for p in plans]) + "\n")
        return
    table = Table("id", "name", "netting", "what")
    for p in plans:
        table.add_row(p.id, p.name, p.netting, p.description)
    out.print(table)


@plans_app.command("show")
def plans_show_cmd(
    ref: Annotated[str, typer.Argument(help="A built-in plan id or a plan TOML file.")],
    json_out: JsonOption = False,
) -> None:
    """Show a plan's components: who is paid, for what, at what price."""
    from kwartier.tariffs.plan import PlanError, load_plan

    try:
        loaded = load_plan(ref)
    except PlanError as exc:
        raise fail(str(exc)) from None
    plan = loaded.plan
    if json_out:
        sys.stdout.write(plan.model_dump_json() + "\n")
        return
    out.print(f"[bold]{plan.name}[/] ({plan.id}) - VAT {plan.vat_rate * 100:g} %, netting {plan.netting}")
    if plan.description:
        out.print(plan.description)
    table = Table("component", "payee", "basis", "price (EUR per unit)", "fixed", "VAT")
    for c in plan.components:
        price = c.price if c.price is not None else "; ".join(
            f"{'up to ' + str(b.up_to_kwh) + ' kWh' if b.up_to_kwh is not None else 'beyond'}: {b.price}"
            for b in c.bands or [])
        if c.of:
            price += f" x ({' + '.join(c.of)})"
        table.add_row(f"{c.label} ({c.id})", c.payee, c.basis, price, c.fixed, "yes" if c.vat else "no")
    out.print(table)
    if plan.parameters:
        out.print("parameters: " + ", ".join(f"{k} = {v}" for k, v in plan.parameters.items()))


def _when(text: str | None, option: str) -> datetime:
    """The time given with ``option``, or now."""
    from datetime import UTC

    return datetime.now(UTC) if text is None else _aware(text, option)


def _aware(text: str, option: str) -> datetime:
    """An ISO 8601 time with an offset; a clear error (exit 2) otherwise."""
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise fail(f"{option} {text!r} is not an ISO 8601 time such as 2026-10-01T12:00:00+02:00") from None
    if when.tzinfo is None:
        raise fail(f"{option} {text!r} has no offset; add one, e.g. +01:00 or Z")
    return when


PlanOption = Annotated[str, typer.Option("--plan", help="Plan id or TOML file.")]
ZoneOption = Annotated[str, typer.Option("--zone", help="Bidding zone of the market prices.")]
KnownAtOption = Annotated[str | None, typer.Option("--known-at", help="As known at this time (default: now).")]


@prices_app.command("show")
def prices_show_cmd(
    plan: PlanOption,
    day: Annotated[str, typer.Option("--day", help="Local day, YYYY-MM-DD.")],
    zone: ZoneOption = "NL",
    known_at: KnownAtOption = None,
    json_out: JsonOption = False,
) -> None:
    """A day of quarter-hour prices under a plan, each fixed or forecast as known at --known-at."""
    from datetime import date

    from kwartier.services.prices import day_prices
    from kwartier.tariffs.compose import MissingData
    from kwartier.tariffs.lifecycle import BeyondHorizon
    from kwartier.tariffs.plan import PlanError, load_plan
    from kwartier.timegrid import format_local, iso_utc

    when = _when(known_at, "--known-at")
    try:
        the_day = date.fromisoformat(day)
    except ValueError as exc:
        raise fail(f"--day {day!r}: {exc} (use YYYY-MM-DD)") from None
    try:
        loaded = load_plan(plan)
        rows = day_prices(open_store(State.db), loaded, zone, the_day, when)
    except (PlanError, BeyondHorizon) as exc:
        raise fail(str(exc)) from None
    except MissingData as exc:
        raise fail(f"{exc}; import day-ahead prices first (kwartier import prices)") from None
    except StoreError as exc:
        raise fail(str(exc), 1) from None
    comps = [c.spec.id for c in loaded.components if c.spec.id in set(rows["component"].to_list())]
    quarters = []
    for (start,), part in rows.sort("interval_start").group_by(["interval_start"], maintain_order=True):
        by = {r["component"]: r for r in part.iter_rows(named=True)}
        quarters.append({"start": iso_utc(start), "components": {
            c: {"eur_per_kwh": str(Decimal(by[c]["price_ueur_per_kwh"]).scaleb(-6)), "status": by[c]["status"],
                "known_at": iso_utc(by[c]["known_at"])} for c in comps}})
    if json_out:
        sys.stdout.write(json.dumps({"plan": loaded.id, "zone": zone, "day": the_day.isoformat(),
                                     "known_at": iso_utc(when), "quarters": quarters}) + "\n")
        return
    table = Table("quarter (local)", *[f"{c}\nEUR/kWh" for c in comps], "status",
                  title=f"{loaded.plan.name}, {the_day} as known at {format_local(when, loaded.plan.timezone)}",
                  title_justify="left")
    for qtr in quarters:
        start = datetime.fromisoformat(qtr["start"].replace("Z", "+00:00"))
        states = {v["status"] for v in qtr["components"].values()}
        label = "fixed" if states == {"fixed"} else "[italic]forecast[/]"
        table.add_row(format_local(start, loaded.plan.timezone), *[qtr["components"][c]["eur_per_kwh"] for c in comps],
                      label)
    out.print(table)


@prices_app.command("explain")
def prices_explain_cmd(
    plan: PlanOption,
    at: Annotated[str, typer.Option("--at", help="A time inside the quarter-hour to explain (ISO 8601).")],
    zone: ZoneOption = "NL",
    known_at: KnownAtOption = None,
    locale: Annotated[str, typer.Option("--locale", help="nl, en or fr.")] = "en",
    json_out: JsonOption = False,
) -> None:
    """Explain one quarter-hour's price, component by component."""
    from kwartier.services.prices import stored_prices
    from kwartier.tariffs.compose import MissingData
    from kwartier.tariffs.explain import LOCALES, explain
    from kwartier.tariffs.lifecycle import BeyondHorizon
    from kwartier.tariffs.plan import PlanError, load_plan

    ts, when = _when(at, "--at"), _when(known_at, "--known-at")
    if locale not in LOCALES:
        raise fail(f"--locale {locale!r}: choose nl, en or fr")
    try:
        loaded = load_plan(plan)
        market = stored_prices(open_store(State.db), zone, ts - timedelta(days=9), ts + timedelta(days=2))
        parts = explain(loaded, market, ts, when, locale)
    except (PlanError, BeyondHorizon) as exc:
        raise fail(str(exc)) from None
    except MissingData as exc:
        raise fail(f"{exc}; import day-ahead prices first (kwartier import prices)") from None
    except StoreError as exc:
        raise fail(str(exc), 1) from None
    if json_out:
        sys.stdout.write(json.dumps({"plan": loaded.id, "at": ts.isoformat(), "locale": locale,
                                     "components": [p.to_json() for p in parts]}, ensure_ascii=False) + "\n")
        return
    for p in parts:
        out.print(p.sentence, highlight=False, soft_wrap=True)


@app.command("settle")
def settle_cmd(
    period: Annotated[str, typer.Option("--period", help="Local month, YYYY-MM.")],
    scheduler: Annotated[str | None, typer.Option("--scheduler", help="Settle on the Dask cluster at this "
                                                  "scheduler (tcp://HOST:PORT).")] = None,
    dask_workers: Annotated[int | None, typer.Option("--workers", min=1, help="Settle on a local Dask cluster "
                                                     "of N worker processes.")] = None,
    export_dir: Annotated[Path | None, typer.Option("--export-dir", help="Where the Dask partitions are written "
                                                    "(readable by every worker; default: a temporary folder).")]
    = None,
    json_out: JsonOption = False,
) -> None:
    """Settle every connection for a month and post it to the ledger; a second run posts nothing."""
    from kwartier.community.definition import DefinitionError
    from kwartier.scale.partitions import PartitionError
    from kwartier.services.settle import SettleError, settle
    from kwartier.tariffs.compose import MissingData

    if scheduler and dask_workers:
        raise fail("give --scheduler or --workers, not both")

    def run(engine):  # type: ignore[no-untyped-def]
        if scheduler or dask_workers:
            from kwartier.scale import settle_distributed

            return settle_distributed(engine, period, scheduler=scheduler, workers=dask_workers, folder=export_dir)
        return settle(engine, period)

    try:
        engine = open_store(State.db)
        if json_out or not err.is_terminal:
            summary = run(engine)
        else:
            with err.status(f"settling {period}"):
                summary = run(engine)
    except (SettleError, MissingData, DefinitionError, PartitionError) as exc:
        raise fail(str(exc)) from None
    except StoreError as exc:
        raise fail(str(exc), 1) from None
    data = summary.to_json()
    if json_out:
        sys.stdout.write(json.dumps(data) + "\n")
        return
    out.print(f"[bold]{period}[/]: {data['connections']} meters, {data['intervals']} connection-quarter-hours, "
              f"{data['estimated_intervals']} estimated; {data['new_postings']} new postings "
              f"({data['postings']} in the period)")
    table = Table("participant", "owes EUR", title="per participant", title_justify="left")
    for k, v in data["by_participant"].items():  # type: ignore[union-attr]
        table.add_row(k, v)
    out.print(table)
    table = Table("payee", "receives EUR", title="per payee", title_justify="left")
    for k, v in data["by_payee"].items():  # type: ignore[union-attr]
        table.add_row(k, v)
    out.print(table)
    out.print(f"debits {data['debit_total']} = credits {data['credit_total']} EUR")
    for note in summary.notes:
        out.print(f"  [yellow]note:[/] {note}")


ledger_app = typer.Typer(help="The hash-chained journal: verify it, see balances.", no_args_is_help=True)
app.add_typer(ledger_app, name="ledger")


@ledger_app.command("verify")
def ledger_verify_cmd(json_out: JsonOption = False) -> None:
    """Check every journal entry against its hash and its place in the chain (exit 1 if not intact)."""
    from kwartier.settle.ledger import verify

    with store().connect() as conn:
        verdict = verify(conn)
    if json_out:
        sys.stdout.write(json.dumps(verdict.to_json()) + "\n")
    elif verdict.ok:
        out.print(f"ledger intact: {verdict.entries} entries")
    else:
        err.print(f"[bold red]ledger broken[/] at entry {verdict.first_bad}: {verdict.reason}")
    if not verdict.ok:
        raise typer.Exit(1)


@ledger_app.command("balances")
def ledger_balances_cmd(json_out: JsonOption = False) -> None:
    """Net balance per account: positive owes, negative is owed (they sum to zero)."""
    from kwartier.money import format_eur, nano_to_cents
    from kwartier.settle.ledger import balances

    with store().connect() as conn:
        result = balances(conn)
    shown = {k: format_eur(nano_to_cents(v)) for k, v in result.items()}
    if json_out:
        sys.stdout.write(json.dumps({"balances": shown, "sum": format_eur(nano_to_cents(sum(result.values())))})
                         + "\n")
        return
    table = Table("account", "balance EUR")
    for k, v in shown.items():
        table.add_row(k, v)
    out.print(table)


@app.command("bill")
def bill_cmd(
    period: Annotated[str, typer.Option("--period", help="Local month, YYYY-MM (settled first).")],
    out_dir: Annotated[Path, typer.Option("--out", help="Where invoice files go.")] = Path("invoices"),
    json_out: JsonOption = False,
) -> None:
    """Issue the month's invoices (one per participant per supplier), credit notes for corrections, files."""
    from kwartier.services.billing import BillingError, bill
    from kwartier.services.settle import SettleError

    engine = store()
    try:
        if json_out or not err.is_terminal:
            summary = bill(engine, period, out_dir)
        else:
            with err.status(f"billing {period}"):
                summary = bill(engine, period, out_dir)
    except (BillingError, SettleError) as exc:
        raise fail(str(exc)) from None
    data = summary.to_json()
    if json_out:
        sys.stdout.write(json.dumps(data) + "\n")
        return
    table = Table("number", "participant", "supplier", "net", "VAT", "total", "pdf",
                  title=f"invoices {period}", title_justify="left")
    for inv in [*summary.invoices, *summary.credit_notes]:
        table.add_row(str(inv["number"]), str(inv["participant"]), str(inv["supplier"]), str(inv["net_total"]),
                      str(inv["vat"]), str(inv["total"]), str(inv["pdf"]))
    out.print(table)


invoice_app = typer.Typer(help="Issued invoices and credit notes.", no_args_is_help=True)
app.add_typer(invoice_app, name="invoice")


@invoice_app.command("list")
def invoice_list_cmd(
    participant: Annotated[str | None, typer.Option("--participant", help="Only this participant's.")] = None,
    json_out: JsonOption = False,
) -> None:
    """List invoices and credit notes."""
    from kwartier.services.billing import listing

    rows = listing(store(), participant)
    if json_out:
        sys.stdout.write(json.dumps({"invoices": rows}) + "\n")
        return
    table = Table("number", "kind", "participant", "supplier", "period", "issued", "total EUR", "corrects")
    for r in rows:
        table.add_row(*(str(r[k] or "") for k in ("number", "kind", "participant", "supplier", "period",
                                                   "issue_date", "total", "corrects")))
    out.print(table)


@invoice_app.command("show")
def invoice_show_cmd(
    number: Annotated[str, typer.Argument(help="Invoice number, e.g. ZUIDSTRO-2026-000001.")],
    json_out: JsonOption = False,
) -> None:
    """Show one invoice: front page and specification."""
    from kwartier.billing.documents import invoice_to_json
    from kwartier.money import format_eur
    from kwartier.services.billing import BillingError, find

    try:
        invoice, info = find(store(), number)
    except BillingError as exc:
        raise fail(str(exc)) from None
    if json_out:
        sys.stdout.write(json.dumps(invoice_to_json(invoice, info), ensure_ascii=False) + "\n")
        return
    kind = {"invoice": "Invoice", "credit_note": "Credit note", "debit_note": "Debit note"}[invoice.kind]
    corrects = f" (corrects {invoice.references})" if invoice.references else ""
    out.print(f"[bold]{kind} {invoice.number}[/]{corrects}")
    out.print(f"{invoice.seller.name} -> {invoice.buyer.name}; period {invoice.period}; issued {invoice.issue_date}, "
              f"due {invoice.due_date}; connections {', '.join(invoice.connections)}")
    table = Table("section", "line", "quantity", "avg price", "EUR")
    for ln in invoice.lines:
        table.add_row(ln.section, ln.label, f"{ln.quantity} {ln.unit}", str(ln.unit_price or ""),
                      format_eur(ln.amount_cents))
    table.add_row("", "net total", "", "", format_eur(invoice.net_total_cents), style="bold")
    for v in invoice.vat:
        table.add_row("", f"VAT {v.category} {v.rate * 100:g} % on {format_eur(v.base_cents)}", "", "",
                      format_eur(v.vat_cents))
    table.add_row("", "total", "", "", format_eur(invoice.total_cents), style="bold")
    out.print(table)


@invoice_app.command("pdf")
def invoice_pdf_cmd(
    number: Annotated[str, typer.Argument(help="Invoice number.")],
    output: Annotated[Path, typer.Option("-o", "--output", help="The PDF file to write.")],
) -> None:
    """Write an invoice as PDF (Factur-X: PDF/A-3 with its EN 16931 XML embedded)."""
    from kwartier.billing.einvoice import facturx_pdf
    from kwartier.billing.render import render_html, render_pdf
    from kwartier.services.billing import BillingError, find

    try:
        invoice, info = find(store(), number)
    except BillingError as exc:
        raise fail(str(exc)) from None
    from kwartier.services.billing import atomic_write

    try:
        atomic_write(output, facturx_pdf(render_pdf(render_html(invoice, info)), invoice))
    except BillingError as exc:
        raise fail(str(exc), 1) from None
    out.print(f"wrote {output}")


@app.command("cost")
def cost_cmd(
    readings: Annotated[Path, typer.Option("--readings", help="Meter file (any supported format).")],
    prices: Annotated[Path, typer.Option("--prices", help="Day-ahead price file (any supported format).")],
    plan: Annotated[list[str], typer.Option("--plan", help="Plan id or TOML file; repeat to compare plans.")],
    date_from: Annotated[str, typer.Option("--from", help="First local day, YYYY-MM-DD.")],
    date_to: Annotated[str, typer.Option("--to", help="Day after the last, YYYY-MM-DD (exclusive).")],
    readings_format: Annotated[str | None, typer.Option("--readings-format")] = None,
    prices_format: Annotated[str | None, typer.Option("--prices-format")] = None,
    allow_gaps: Annotated[bool, typer.Option("--allow-gaps", help="Price what is there; report gaps.")] = False,
    json_out: JsonOption = False,
) -> None:
    """Price a meter file under one or more plans (no database): what would I pay?"""
    from datetime import date

    from kwartier.ingest import read_prices, read_readings
    from kwartier.tariffs.compose import MissingData
    from kwartier.tariffs.cost import cost
    from kwartier.tariffs.plan import PlanError, load_plan

    try:
        first, end = date.fromisoformat(date_from), date.fromisoformat(date_to)
    except ValueError as exc:
        raise fail(f"--from/--to: {exc} (use YYYY-MM-DD)") from None
    if end <= first:
        raise fail(f"--to {end} must be after --from {first} (the end is exclusive)")
    try:
        plans = [load_plan(p) for p in plan]
        r = read_readings(readings, readings_format)
        m = read_prices(prices, prices_format)
        results = [cost(p, r.frame, m.frame, first, end, allow_gaps=allow_gaps) for p in plans]
    except (InputRejected, PlanError) as exc:
        raise fail(str(exc)) from None
    except MissingData as exc:
        raise fail(f"{exc}; use --allow-gaps to price what is there") from None
    if json_out:
        sys.stdout.write(json.dumps({"results": [x.to_json() for x in results]}) + "\n")
        return
    for x in results:
        data = x.to_json()
        table = Table(title=f"{x.plan}: {data['from']} .. {data['to']} (end exclusive)", title_justify="left")
        for col in ("component", "payee", "quantity", "amount EUR"):
            table.add_column(col, justify="right" if col in ("quantity", "amount EUR") else "left")
        for ln in x.lines:
            table.add_row(ln.label, ln.payee, f"{ln.quantity} {ln.unit}", str(ln.to_json()["amount"]))
        table.add_row("net total", "", "", str(data["net_total"]), style="bold")
        table.add_row(f"VAT {x.vat_rate * 100:g} %", "", "", str(data["vat"]))
        table.add_row("total", "", "", str(data["total"]), style="bold")
        out.print(table)
        out.print(f"import {data['import_kwh']} kWh, export {data['export_kwh']} kWh")
        for note in [*x.gaps, *x.notes]:
            out.print(f"  [yellow]note:[/] {note}")


# --- community (issue 4): the community definition file ------------------------------------------

community_app = typer.Typer(help="The community: parties, participants, connections and contracts.",
                            no_args_is_help=True)
app.add_typer(community_app, name="community")


@community_app.command("load")
def community_load_cmd(
    file: Annotated[Path, typer.Argument(help="Community definition TOML (see examples/community.toml).")],
    json_out: JsonOption = False,
) -> None:
    """Validate a community definition and store what changed as new versions."""
    from kwartier.community.definition import DefinitionError
    from kwartier.services.community import load_community

    try:
        summary = load_community(open_store(State.db), file)
    except DefinitionError as exc:
        raise fail(str(exc)) from None
    except StoreError as exc:
        raise fail(str(exc), 1) from None
    data = summary.to_json()
    if json_out:
        sys.stdout.write(json.dumps(data, ensure_ascii=False) + "\n")
        return
    table = Table(show_header=False, box=None)
    table.add_row("community", str(data["community"]))
    table.add_row("file", summary.file)
    for what in ("parties", "participants", "connections", "metering_points", "contracts"):
        table.add_row(what.replace("_", " "), str(data[what]))
    table.add_row("stored", f"{summary.new} new, {summary.changed} changed, {summary.unchanged} unchanged, "
                            f"{summary.removed} removed")
    out.print(table)
    if summary.load_id is None:
        out.print("nothing changed; nothing written")


# --- web portal: serve, users ---------------------------------------------------------------------

users_app = typer.Typer(help="Portal users: participants, operators, grid operators.", no_args_is_help=True)
app.add_typer(users_app, name="users")


@users_app.command("add")
def users_add_cmd(
    username: Annotated[str, typer.Argument(help="The login name.")],
    role: Annotated[str, typer.Option("--role", help="participant, operator or grid.")],
    participant: Annotated[str | None, typer.Option("--participant", help="The participant id (role participant).")]
    = None,
    party: Annotated[str | None, typer.Option("--party", help="The grid party whose area a grid user sees.")] = None,
    password: Annotated[str | None, typer.Option("--password", help="The password (asked when not given).")] = None,
    json_out: JsonOption = False,
) -> None:
    """Add a portal user; the password is stored as an argon2id hash."""
    from kwartier.web.auth import UserError, create_user

    if password is None:
        password = typer.prompt("password", hide_input=True, confirmation_prompt=True)
    try:
        user = create_user(open_store(State.db), username, password, role, participant, party=party)
    except UserError as exc:
        raise fail(str(exc)) from None
    except StoreError as exc:
        raise fail(str(exc), 1) from None
    data = {"username": user.username, "role": user.role, "participant": user.participant, "party": user.party}
    if json_out:
        sys.stdout.write(json.dumps(data) + "\n")
        return
    out.print(f"user {user.username} added ({user.role}{', ' + user.participant if user.participant else ''})")


@app.command("serve")
def serve_cmd(
    host: Annotated[str, typer.Option("--host", help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="Port to listen on.")] = 8000,
    workers: WorkersOption = None,
) -> None:
    """The web portal and the JSON API (/api/v1/docs); $KWARTIER_SECRET signs sessions, else the store's."""
    _serve(store(), host, port, workers)


def _serve(engine, host: str, port: int, workers: int | None = None) -> None:  # type: ignore[no-untyped-def]
    """Run the portal until interrupted; $KWARTIER_SECRET signs sessions, else the secret kept in the store.

    One worker serves the app in this process; more run as uvicorn worker processes, each opening the
    same store (its URL passed as $KWARTIER_DATABASE_URL). The store's secret is made here first, so
    that all workers sign with the same one.
    """
    import os

    import uvicorn

    from kwartier.web.app import SERVE_CACHE_TTL_S, create_app
    from kwartier.web.auth import web_secret

    count = workers or max(1, min(os.cpu_count() or 1, 4))
    secret = os.environ.get("KWARTIER_SECRET")
    err.print(f"portal at http://{host}:{port}/ ({count} worker{'s' if count > 1 else ''}; Ctrl+C stops it)")
    if count == 1:
        uvicorn.run(create_app(engine, secret=secret.encode() if secret else None, cache_ttl_s=SERVE_CACHE_TTL_S),
                    host=host, port=port, proxy_headers=True, log_level="warning")
        return
    if not secret:
        web_secret(engine)  # generated and stored once, before the workers read it
    os.environ["KWARTIER_DATABASE_URL"] = engine.url.render_as_string(hide_password=False)
    uvicorn.run("kwartier.web.app:app_from_env", factory=True, workers=count, host=host, port=port,
                proxy_headers=True, log_level="warning")


# --- commands that live in their own modules --------------------------------------------------------
steer_app = typer.Typer(help="Steer devices: re-plan every quarter-hour and dispatch set-points.", no_args_is_help=True)
app.add_typer(steer_app, name="steer")


def _register_modules() -> None:
    from kwartier import cli_community, cli_dispatch, cli_governance, cli_steer, cli_telemetry

    cli_dispatch.register(steer_app)
    cli_steer.register(app)
    cli_community.register(community_app)
    cli_governance.register(app)
    cli_telemetry.register(app)


_register_modules()


if __name__ == "__main__":  # pragma: no cover
    app()
