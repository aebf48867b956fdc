"""Commands ``kwartier governance ...``, ``kwartier privacy ...`` and ``kwartier audit reproduce``.

``register(app)`` adds the three sub-apps to the main Typer app (cli.py calls it at its end).
"""

import json
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import typer

JsonOption = Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout.")]
WhoOption = Annotated[str, typer.Option("--by", help="The participant id who acts.")]


def _cli() -> Any:
    from kwartier import cli  # late: cli.py imports this module at its end

    return cli


def _when(text: str, what: str) -> datetime:
    """An ISO 8601 timestamp with its zone (e.g. 2026-04-01T00:00+02:00)."""
    try:
        ts = datetime.fromisoformat(text)
    except ValueError:
        raise _cli().fail(f"{what} {text!r} is not an ISO 8601 time such as 2026-04-01T00:00+02:00") from None
    if ts.tzinfo is None:
        raise _cli().fail(f"{what} {text!r} has no zone; write e.g. 2026-04-01T00:00+02:00 or ...Z")
    return ts


def _change(text: str) -> dict[str, Any]:
    """A JSON merge patch given inline or as @file."""
    raw = Path(text[1:]).read_text(encoding="utf-8") if text.startswith("@") else text
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise _cli().fail(f"--change is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise _cli().fail("--change must be a JSON object, e.g. '{\"price\": {\"rule\": \"uniform\", ...}}'")
    return value


def _print(data: dict[str, Any], as_json: bool, text: str) -> None:
    out = _cli().out
    if as_json:
        out.print_json(json.dumps(data, default=str))
    else:
        out.print(text, highlight=False, soft_wrap=True)


def _governance_app() -> typer.Typer:
    from kwartier.community.definition import DefinitionError
    from kwartier.community.governance import GovernanceError

    app = typer.Typer(help="The community's rulebook: versions, proposals and votes, members.", no_args_is_help=True)

    def run(work: Any) -> Any:
        cli = _cli()
        try:
            return work(cli.store())
        except (GovernanceError, DefinitionError) as exc:
            raise cli.fail(str(exc)) from None

    @app.command("found")
    def found(rulebook: Annotated[Path | None, typer.Option(help="A rulebook TOML/JSON (default rules if absent).")]
              = None, effective_from: Annotated[str, typer.Option("--from")] = "2000-01-01T00:00Z",
              json_out: JsonOption = False) -> None:
        """Record the first rulebook version and the members of the loaded community definition."""
        from kwartier.community.rules import RulebookError, load_rulebook
        from kwartier.services import governance as gov

        try:
            rb = load_rulebook(rulebook) if rulebook else None
        except RulebookError as exc:
            raise _cli().fail(str(exc)) from None
        v = run(lambda e: gov.found(e, rb, effective_from=_when(effective_from, "--from")))
        _print({"version": v.version, "digest": v.digest, "effective_from": v.effective_from.isoformat()}, json_out,
               f"rulebook version {v.version} ({v.digest[:12]}) in force from {v.effective_from.isoformat()}")

    @app.command("propose")
    def propose(by: WhoOption, title: Annotated[str, typer.Option()],
                change: Annotated[str, typer.Option(help="A JSON merge patch over the rulebook, or @file.json.")],
                effective_from: Annotated[str, typer.Option("--from", help="A quarter boundary, ISO 8601 with zone.")],
                closes: Annotated[str | None, typer.Option(help="When voting closes (default: 7 days).")] = None,
                json_out: JsonOption = False) -> None:
        """Propose a change of the rulebook, taking effect at a future quarter."""
        from kwartier.services import governance as gov

        patch = _change(change)
        when, until = _when(effective_from, "--from"), _when(closes, "--closes") if closes else None
        pid = run(lambda e: gov.propose(e, by, title, patch, when, until))
        _print({"proposal": pid}, json_out, f"proposal {pid} recorded; members vote with "
                                            f"`kwartier governance vote {pid} --by ID --choice yes|no|abstain`")

    @app.command("vote")
    def vote(proposal: int, by: WhoOption,
             choice: Annotated[str, typer.Option(help="yes, no or abstain (a vote is final).")],
             json_out: JsonOption = False) -> None:
        """Cast a member's vote on a proposal."""
        from kwartier.services import governance as gov

        status = run(lambda e: gov.vote(e, proposal, by, choice))
        _print({"proposal": proposal, "status": status}, json_out, f"vote recorded; proposal {proposal} is {status}")

    @app.command("show")
    def show(json_out: JsonOption = False) -> None:
        """The rulebook in force, its versions, and the proposals with their votes."""
        from kwartier.services import governance as gov

        data = run(lambda e: gov.show(e))
        cur = data["in_force"]
        lines = [f"in force: version {cur['version']} ({cur['digest'][:12]}) since {cur['effective_from']}",
                 *(f"  v{v['version']} from {v['effective_from']} {v['digest'][:12]}" for v in data["versions"]),
                 *(f"proposal {p['id']} [{p['status']}] {p['title']!r} from {p['effective_from']}, closes "
                   f"{p['closes_at']}: {p['tally']}" for p in data["proposals"])]
        _print(data, json_out, "\n".join(lines))

    @app.command("join")
    def join(participant: str, at: Annotated[str, typer.Option(help="A coming quarter boundary, ISO 8601.")]) -> None:
        """A participant becomes a member (votes, shares) from a quarter boundary."""
        from kwartier.services import governance as gov

        run(lambda e: gov.join(e, participant, _when(at, "--at")))
        _print({}, False, f"{participant} is a member from {at}")

    @app.command("leave")
    def leave(participant: str, at: Annotated[str, typer.Option(help="A coming quarter boundary, ISO 8601.")]) -> None:
        """A member leaves at a quarter boundary."""
        from kwartier.services import governance as gov

        run(lambda e: gov.leave(e, participant, _when(at, "--at")))
        _print({}, False, f"{participant} is no longer a member from {at}")

    return app


def _privacy_app() -> typer.Typer:
    from kwartier.services.privacy import PURPOSES, PrivacyError

    app = typer.Typer(help="Members' data: consent per purpose, export, erasure, access log.", no_args_is_help=True)

    def run(work: Any) -> Any:
        cli = _cli()
        try:
            return work(cli.store())
        except PrivacyError as exc:
            raise cli.fail(str(exc)) from None

    @app.command("consent")
    def consent(participant: str, purpose: Annotated[str, typer.Argument(help=", ".join(PURPOSES))],
                grant: Annotated[bool, typer.Option("--grant/--withdraw")] = True) -> None:
        """Record a member's consent (or its withdrawal) for one purpose."""
        from kwartier.services import privacy

        run(lambda e: privacy.set_consent(e, participant, purpose, grant, by="cli"))
        _print({}, False, f"{participant}: {purpose} {'granted' if grant else 'withdrawn'}")

    @app.command("export")
    def export(participant: str, out: Annotated[Path, typer.Option("--out", help="The JSON file to write.")]) -> None:
        """Write everything stored about a member to a JSON file (the access is logged)."""
        from kwartier.services import privacy

        data = run(lambda e: privacy.export_member(e, participant, actor="cli", role="operator"))
        out.write_text(json.dumps(data, indent=1, default=str), encoding="utf-8")
        _print({}, False, f"{participant}: {len(data['readings'])} readings, {len(data['journal'])} journal entries "
                          f"-> {out}")

    @app.command("erase")
    def erase(participant: str, yes: Annotated[bool, typer.Option("--yes", help="Confirm the erasure.")] = False,
              json_out: JsonOption = False) -> None:
        """Pseudonymise a member's personal data (the journal stays verifiable)."""
        from kwartier.services import privacy

        if not yes:
            raise _cli().fail("erasure cannot be undone: add --yes to confirm")
        summary = run(lambda e: privacy.erase_member(e, participant, requested_by="cli"))
        _print(summary, json_out, f"{participant} is now {summary['pseudonym']}; retained: {summary['retained']}")

    return app


def _audit_app() -> typer.Typer:
    app = typer.Typer(help="Re-run settled periods from the stored inputs.", no_args_is_help=True)

    @app.command("reproduce")
    def reproduce(period: Annotated[str, typer.Option(help="YYYY-MM")],
                  run_id: Annotated[int | None, typer.Option("--run", help="As of this settle run (default: the "
                                                                            "period's last).")] = None,
                  json_out: JsonOption = False) -> None:
        """Settle PERIOD again as of its last run; exit 0 when the hash is identical, 1 with the diff otherwise."""
        from kwartier.services.audit import AuditError
        from kwartier.services.audit import reproduce as run_reproduce
        from kwartier.services.settle import SettleError

        cli = _cli()
        try:
            result = run_reproduce(cli.store(), period, run_id)
        except (AuditError, SettleError) as exc:
            raise cli.fail(str(exc)) from None
        verdict = "identical" if result.identical else "DIFFERENT"
        lines = [f"{period}: run {result.run_id} of {result.run_at.isoformat()}, {result.lines} lines: {verdict}",
                 f"  recorded   {result.recorded_hash}", f"  reproduced {result.reproduced_hash}",
                 *(f"  rules v{r['version']} ({r['digest'][:12]}) {r['from']} .. {r['to']}" for r in result.rules),
                 *(f"  {d['participant']} {d['meter'] or ''} {d['component']}: recorded {d['recorded_nano']} nano, "
                   f"reproduced {d['reproduced_nano']} nano; changed: {', '.join(d['changed_inputs']) or '-'}"
                   for d in result.diff),
                 *(f"  governance: {p}" for p in result.problems)]
        _print(result.to_json(), json_out, "\n".join(lines))
        if not result.identical:
            raise typer.Exit(1)

    return app


def register(app: typer.Typer) -> None:
    """Add ``governance``, ``privacy`` and ``audit`` to the main app."""
    app.add_typer(_governance_app(), name="governance")
    app.add_typer(_privacy_app(), name="privacy")
    app.add_typer(_audit_app(), name="audit")
