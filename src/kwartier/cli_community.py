"""The ``kwartier community share`` and ``export-allocation`` commands: a month's sharing, its KPIs, its CSV."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

PeriodOption = Annotated[str, typer.Option("--period", help="The local month, YYYY-MM.")]
KeysOption = Annotated[Path | None, typer.Option(
    "--keys", help="Dynamic keys CSV (timestamp,participant,key) for the rule 'dynamic'.")]
RulesOption = Annotated[Path | None, typer.Option(
    "--rules", help="A rulebook TOML/JSON to use instead of the rules in force (a what-if; never with --post).")]


def register(community_app: typer.Typer) -> None:
    """Add ``share`` and ``export-allocation`` to the ``community`` sub-app of the main CLI."""
    community_app.command("share")(share_cmd)
    community_app.command("export-allocation")(export_allocation_cmd)


def _inputs(keys: Path | None, rules: Path | None):  # type: ignore[no-untyped-def]
    from kwartier.community.rules import RulebookError, load_rulebook
    from kwartier.services.sharing import SharingServiceError, read_dynamic_keys

    try:
        return (read_dynamic_keys(str(keys)) if keys else None), (load_rulebook(rules) if rules else None)
    except (RulebookError, SharingServiceError) as exc:
        from kwartier.cli import fail

        raise fail(str(exc)) from None


def share_cmd(
    period: PeriodOption,
    json_out: Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout.")] = False,
    post: Annotated[bool, typer.Option("--post", help="Also post the shared energy's settlement to the ledger.")]
    = False,
    keys: KeysOption = None,
    rules: RulesOption = None,
) -> None:
    """A month's sharing of local production per member, with self-consumption and self-sufficiency."""
    from kwartier.cli import err, fail, out, store
    from kwartier.services.sharing import SharingServiceError, compute_sharing
    from kwartier.services.sharing_ledger import post_sharing

    if post and rules:
        raise fail("--rules is a what-if; the ledger only takes the rules in force (drop --rules or --post)")
    dynamic, rulebook = _inputs(keys, rules)
    engine = store()
    try:
        result = compute_sharing(engine, period, rulebook=rulebook, dynamic_keys=dynamic)
        posted = post_sharing(engine, period, dynamic_keys=dynamic) if post else None
    except SharingServiceError as exc:
        raise fail(str(exc)) from None
    data = result.to_json()
    for note in result.notes:
        err.print(f"note: {note}", highlight=False)
    if posted is not None:
        err.print(f"posted {posted.new_postings} new ledger entries ({posted.lines} lines; digest "
                  f"{posted.digest[:16]})", highlight=False)
    if json_out:
        sys.stdout.write(json.dumps(data, ensure_ascii=False) + "\n")
        return
    k = result.kpis
    out.print(f"{period}: produced {data['production_kwh']} kWh, consumed {data['consumption_kwh']} kWh, "
              f"shared {data['shared_kwh']} kWh; self-consumption {data['self_consumption']}, self-sufficiency "
              f"{data['self_sufficiency']}; peak import {k.peak_import_kw} kW; Gini of savings "
              f"{k.savings_gini if k.savings_gini is not None else '-'}", highlight=False)
    table = Table("participant", "production kWh", "surplus kWh", "consumption kWh", "community kWh",
                  "complement kWh", "saving EUR")
    members: list[dict[str, str]] = data["members"]  # type: ignore[assignment]
    for row, saved in zip(members, k.savings_nano, strict=True):
        table.add_row(row["participant"], row["production_kwh"], row["surplus_kwh"], row["consumption_kwh"],
                      row["community_kwh"], row["complement_kwh"], f"{saved / 1e9:.2f}")
    out.print(table)


def export_allocation_cmd(
    period: PeriodOption,
    out_file: Annotated[Path, typer.Option("--out", help="The CSV file to write.")],
    participant: Annotated[str | None, typer.Option("--participant", help="Only this participant.")] = None,
    keys: KeysOption = None,
) -> None:
    """The allocation per member and quarter as a French-style CSV (horodate, consumption, community share, ...)."""
    from kwartier.cli import err, fail, store
    from kwartier.services.sharing import SharingServiceError, allocation_csv, compute_sharing

    dynamic, _ = _inputs(keys, None)
    try:
        result = compute_sharing(store(), period, dynamic_keys=dynamic)
        text = allocation_csv(result, participant)
    except SharingServiceError as exc:
        raise fail(str(exc)) from None
    out_file.write_text(text, encoding="utf-8")
    err.print(f"wrote {out_file} ({text.count(chr(10)) - 1} rows)", highlight=False)
