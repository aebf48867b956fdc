"""Test helpers shared by the settlement, billing and portal tests: a small community file, generic CSVs."""

from __future__ import annotations

from pathlib import Path

import polars as pl

#: The parties every test community has: a supplier that is also the aggregator, a grid operator,
#: the tax office and the cooperative.
HEAD = """[community]
id = "t"
name = "Test"

[[parties]]
id = "sup"
roles = ["supplier", "aggregator"]
name = "Supplier B.V."
vat_id = "NL001234567B01"

[[parties]]
id = "net"
roles = ["grid"]
name = "Grid"

[[parties]]
id = "fisc"
roles = ["tax"]
name = "Tax"

[[parties]]
id = "coop"
roles = ["community"]
name = "Cooperative"
"""


def member(i: int, ean: str, plan: str = "nl-dynamic-2026", valid_from: str = "2023-01-01") -> str:
    """Participant ``p<i>`` with one connection ``ean`` on ``plan`` with supplier ``sup``."""
    return (f'\n[[participants]]\nid = "p{i}"\nname = "Household {i}"\nemail = "p{i}@example.org"\n'
            f'\n[[connections]]\nean = "{ean}"\nparticipant = "p{i}"\ngrid_area = "breda"\ncapacity_kw = "17.25"\n'
            f'grid = "net"\n\n[[contracts]]\nid = "c{i}"\ntarget = "{ean}"\nsupplier = "sup"\nplan = "{plan}"\n'
            f'valid_from = {valid_from}\n')


def write_generic(frame: pl.DataFrame, path: Path) -> Path:
    """A reading frame as the generic meter CSV (timestamp, import_wh, export_wh)."""
    frame.select(pl.col("interval_start").dt.strftime("%Y-%m-%dT%H:%M:%SZ").alias("timestamp"), "import_wh",
                 "export_wh").write_csv(path)
    return path
