"""The ``kwartier telemetry`` commands: consume live meter telemetry from MQTT into the store."""

from __future__ import annotations

import json
import os
import signal
import sys
from datetime import timedelta
from typing import Annotated

import typer

from kwartier.services.telemetry_mqtt import DEFAULT_TOPIC, DEFAULT_URL, ConsumerOptions, TelemetryConsumer
from kwartier.store import StoreError, open_store

ENV_MQTT = "KWARTIER_MQTT_URL"


def _global_db() -> str | None:
    """The ``--db`` given to the main ``kwartier`` command, when run as part of it."""
    main = sys.modules.get("kwartier.cli")
    return getattr(getattr(main, "State", None), "db", None)


def run_cmd(
    mqtt_url: Annotated[str | None, typer.Option("--mqtt", help=f"Broker URL (default: ${ENV_MQTT}, else "
                                                 f"{DEFAULT_URL}).")] = None,
    topic: Annotated[list[str] | None, typer.Option("--topic", help="Topic filter, QoS 1; the level matched by "
                                                    "'+' is the EAN (repeatable).")] = None,
    retention_days: Annotated[int, typer.Option("--retention-days", min=1,
                                                help="Keep raw samples this many days.")] = 30,
    client_id: Annotated[str, typer.Option("--client-id", help="MQTT client id: the broker keeps this "
                                           "session's messages while the consumer is down.")] = "kwartier-telemetry",
    session_expiry: Annotated[int, typer.Option("--session-expiry", min=0, help="Seconds the broker keeps the "
                                                "session after a disconnect.")] = 7 * 24 * 3600,
    batch: Annotated[int, typer.Option("--batch", min=1, help="Messages per database transaction.")] = 5000,
    idle_exit: Annotated[float | None, typer.Option("--idle-exit", help="Stop after this many seconds "
                                                    "without a message (default: run until stopped).")] = None,
    db: Annotated[str | None, typer.Option("--db", help="Database URL (default: the main --db, "
                                           "$KWARTIER_DATABASE_URL, else sqlite:///kwartier.db).")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print the totals as one JSON object at exit.")] = False,
) -> None:
    """Subscribe to P1 and device telemetry and aggregate it into quarter-hour readings (Ctrl-C stops)."""
    try:
        engine = open_store(db or _global_db())
    except StoreError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    options = ConsumerOptions(
        url=mqtt_url or os.environ.get(ENV_MQTT) or DEFAULT_URL, topics=tuple(topic or [DEFAULT_TOPIC]),
        client_id=client_id, session_expiry_s=session_expiry, retention=timedelta(days=retention_days),
        batch_max=batch, idle_exit_s=idle_exit,
    )
    consumer = TelemetryConsumer(engine, options, log=lambda msg: typer.echo(msg, err=True))
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: consumer.stop())
    if not json_out:
        typer.echo(f"consuming {', '.join(options.topics)} from {options.url} as {options.client_id}", err=True)
    try:
        stats = consumer.run()
    except (OSError, ValueError) as exc:
        typer.echo(f"error: cannot consume from {options.url}: {exc}", err=True)
        raise typer.Exit(1) from None
    if json_out:
        typer.echo(json.dumps(stats.to_json()))
    else:
        s = stats
        rejected = ", ".join(f"{k} {v}" for k, v in sorted(s.rejected.items())) or "none"
        typer.echo(f"received {s.received}, stored {s.stored}, duplicates {s.duplicates}, rejected: {rejected}; "
                   f"quarters new {s.quarters_new}, revised {s.quarters_revised}")


def register(app: typer.Typer) -> None:
    """Add the ``telemetry`` command group to the main ``kwartier`` app."""
    telemetry_app = typer.Typer(help="Live meter telemetry over MQTT.", no_args_is_help=True)
    telemetry_app.command("run")(run_cmd)
    app.add_typer(telemetry_app, name="telemetry")


if __name__ == "__main__":  # ``python -m kwartier.cli_telemetry telemetry run ...`` before cli.py wires it in
    standalone = typer.Typer(no_args_is_help=True, pretty_exceptions_enable=False)
    register(standalone)
    standalone()
