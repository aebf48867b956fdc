"""``kwartier steer run``: re-plan a community's households every quarter and dispatch set-points over MQTT."""

from __future__ import annotations

import json
import os
import sys
from datetime import timedelta
from pathlib import Path
from typing import Annotated

import typer


def _fail(message: str, code: int = 2) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code)


def _db_url() -> str | None:
    """The global ``--db`` of the kwartier app, when this sub-app runs inside it."""
    try:
        from kwartier.cli import State
    except ImportError:  # pragma: no cover - cli_dispatch used on its own
        return None
    return State.db


def register(steer_app: typer.Typer) -> None:
    """Add ``run`` to the ``steer`` sub-app."""

    @steer_app.command("run")
    def run_cmd(
        devices: Annotated[Path, typer.Option("--devices", help="Folder with one device TOML per connection, "
                                                                "named <EAN>.toml.")],
        plan: Annotated[str, typer.Option("--plan", help="Tariff plan id or TOML file whose prices steer.")],
        mqtt: Annotated[str | None, typer.Option("--mqtt", help="Broker URL (default: $KWARTIER_MQTT_URL, else "
                                                                "mqtt://127.0.0.1:1883).")] = None,
        once: Annotated[bool, typer.Option("--once", help="Run one cycle and stop.")] = False,
        community: Annotated[str, typer.Option("--community", help="Community id in the MQTT topics.")] = "default",
        zone: Annotated[str, typer.Option("--zone", help="Bidding zone of the market prices.")] = "NL",
        prefix: Annotated[str, typer.Option("--prefix", help="First MQTT topic level.")] = "kwartier",
        horizon_h: Annotated[int, typer.Option("--horizon", min=1, max=47, help="Hours planned ahead.")] = 24,
        home_assistant: Annotated[bool, typer.Option("--home-assistant/--no-home-assistant",
                                                     help="Also publish price sensors for Home Assistant.")] = True,
        ha_prefix: Annotated[str, typer.Option("--ha-prefix", help="Home Assistant's MQTT discovery prefix.")
                             ] = "homeassistant",
        lang: Annotated[str, typer.Option("--lang", help="Language of the reasons: nl, en or fr.")] = "en",
        json_out: Annotated[bool, typer.Option("--json", help="One JSON line per cycle on stdout.")] = False,
    ) -> None:
        """Plan every household in --devices against --plan's prices, every quarter-hour, and publish the
        set-points over MQTT (topics: docs/mqtt.md). With --once: one cycle, exit 1 if any household failed.
        """
        from kwartier.services.steering import Settings, SteeringError, optimiser_planner, run_loop
        from kwartier.steer.mqtt import MqttError, MqttPublisher, broker_url, status_topic
        from kwartier.store import StoreError, open_store
        from kwartier.tariffs.plan import PlanError, load_plan

        try:
            loaded = load_plan(plan)
            engine = open_store(_db_url())
        except PlanError as exc:
            raise _fail(str(exc)) from None
        except StoreError as exc:
            raise _fail(str(exc), 1) from None
        if lang not in ("nl", "en", "fr"):
            raise _fail(f"--lang {lang!r}: choose nl, en or fr")
        settings = Settings(community=community, prefix=prefix, horizon=timedelta(hours=horizon_h), zone=zone,
                            home_assistant=home_assistant, ha_prefix=ha_prefix)

        def show(report) -> None:  # type: ignore[no-untyped-def]
            if json_out:
                sys.stdout.write(json.dumps(report.to_json()) + "\n")
                sys.stdout.flush()
                return
            typer.echo(f"{report.first_quarter:%Y-%m-%d %H:%M}Z: planned {report.planned} of "
                       f"{report.households} households, {report.messages} messages in {report.seconds:.2f} s")
            for e in report.errors:
                typer.echo(f"  error: {e}", err=True)

        try:
            with MqttPublisher(broker_url(os.environ, mqtt), status_topic=status_topic(prefix, community),
                               watch=(prefix, community)) as pub:
                reports = run_loop(engine, loaded, devices, pub, settings, optimiser_planner(locale=lang), once=once,
                                   on_cycle=show, measured_soc=pub.measured_soc)
        except (MqttError, SteeringError) as exc:
            raise _fail(str(exc), 1) from None
        except KeyboardInterrupt:
            raise typer.Exit(0) from None
        if once and reports[-1].errors:
            raise typer.Exit(1)
