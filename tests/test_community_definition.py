"""The community definition: the example file, mistakes and their messages, helpers, versioned storage, the CLI."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import tomllib
from datetime import date
from decimal import Decimal
from importlib import resources
from pathlib import Path

import pytest
from sqlalchemy import func, select

from conftest import ROOT
from kwartier.community import DefinitionError, NotInDefinition, load_definition
from kwartier.ids import make_ean18, validate_ean18
from kwartier.services.community import current_definition, load_community
from kwartier.store import schema as s

EXAMPLE = ROOT / "examples" / "community.toml"
HOUSE_BAKKER = "871687120001010026"
HEAT_PUMP = "871687120001011023"
UNKNOWN = make_ean18("87168712000109999")  # valid, but in no section


def variant(tmp_path: Path, *edits: tuple[str, str], name: str = "community.toml") -> Path:
    """The example with each (old, new) text replaced once; fails if ``old`` is not in it."""
    text = EXAMPLE.read_text(encoding="utf-8")
    for old, new in edits:
        assert old in text, old
        text = text.replace(old, new, 1)
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def rejected(path: Path) -> str:
    with pytest.raises(DefinitionError) as info:
        load_definition(path)
    return str(info.value)


def _builtin_sha(plan_id: str) -> str:
    res = resources.files("kwartier.tariffs") / "plans" / f"{plan_id}.toml"
    return hashlib.sha256(res.read_bytes()).hexdigest()


# --- the example -----------------------------------------------------------------------------------


def test_example_loads_with_everything_the_file_holds():
    raw = tomllib.loads(EXAMPLE.read_text(encoding="utf-8"))
    d = load_definition(EXAMPLE)
    assert d.community.id == raw["community"]["id"] and d.community.timezone == "Europe/Amsterdam"
    assert d.community.zone == "NL"
    assert {p.id for p in d.spec.parties} == {p["id"] for p in raw["parties"]}
    assert {p.id for p in d.spec.participants} == {p["id"] for p in raw["participants"]}
    assert {p.locale for p in d.spec.participants} == {"nl", "en", "fr"}
    assert [c.ean for c in d.spec.connections] == sorted(c["ean"] for c in raw["connections"])
    assert {c.id for c in d.spec.contracts} == {c["id"] for c in raw["contracts"]} == set(d.plans)
    for c in d.spec.connections:
        assert validate_ean18(c.ean) == c.ean
    assert d.metering_points_of(HOUSE_BAKKER)[0].ean == HEAT_PUMP
    assert d.connection_of(HOUSE_BAKKER).capacity_kw == Decimal("17.25")
    for c in d.spec.contracts:  # each plan's version is the SHA-256 of the exact built-in file
        assert d.plan_texts[c.id].sha256 == _builtin_sha(c.plan)
        assert d.plans[c.id].id == c.plan == d.plan_texts[c.id].plan_id


def test_sections_are_sorted_so_file_order_does_not_matter(tmp_path):
    text = EXAMPLE.read_text(encoding="utf-8")
    head, _, contracts = text.partition("[[contracts]]")
    blocks = ["[[contracts]]" + b for b in contracts.split("[[contracts]]")]
    shuffled = tmp_path / "shuffled.toml"
    shuffled.write_text(head + "".join(reversed(blocks)), encoding="utf-8")
    assert load_definition(shuffled).spec == load_definition(EXAMPLE).spec


# --- mistakes: each names file, section, index, id and field ---------------------------------------

CONTRACT_HP = 'id = "c-bakker-heatpump"\ntarget = "871687120001011023"\nsupplier = "warmtewerk"'
MISTAKES = {
    "party without the role": (
        [(CONTRACT_HP, CONTRACT_HP.replace("warmtewerk", "netbeheer-zuid"))],
        "contracts[3] ('c-bakker-heatpump'), field 'supplier': party 'netbeheer-zuid' has no role supplier"),
    "unknown party": (
        [('participant = "janssens"\ngrid_area = "Breda-Ginneken"\ncapacity_kw = "8.05"                    '
          '     # 1 x 35 A\ngrid = "netbeheer-zuid"',
          'participant = "janssens"\ngrid_area = "Breda-Ginneken"\ncapacity_kw = "8.05"\ngrid = "enexis"')],
        "connections[2] ('871687120001010033'), field 'grid': no party 'enexis'"),
    "unknown participant": (
        [('participant = "moreau"', 'participant = "moreaux"')],
        "connections[3] ('871687120001010040'), field 'participant': no participant 'moreaux'"),
    "EAN check digit": (
        [('ean = "871687120001010057"', 'ean = "871687120001010058"')],
        "connections[4] ('871687120001010058'), field 'ean': EAN 871687120001010058 has check digit 8, "
        "but its first 17 digits give 7"),
    "EAN of a connection reused by a metering point": (
        [(f'ean = "{HEAT_PUMP}"', 'ean = "871687120001010064"')],
        "metering_points[0] ('871687120001010064'), field 'ean': EAN 871687120001010064 is already used by "
        "connections[5]"),
    "duplicate participant id": (
        [('id = "elamrani"', 'id = "oconnor"')],
        "participants[5] ('oconnor'), field 'id': id oconnor is already used by participants[4]"),
    "metering point under an unknown connection": (
        [(f'connection = "{HOUSE_BAKKER}"', f'connection = "{UNKNOWN}"')],
        f"metering_points[0] ('871687120001011023'), field 'connection': no connection with EAN {UNKNOWN}"),
    "metering point under a metering point": (
        [(f'connection = "{HOUSE_BAKKER}"', f'connection = "{HEAT_PUMP}"')],
        f"metering_points[0] ('871687120001011023'), field 'connection': {HEAT_PUMP} is a metering point, "
        "not a connection"),
    "contract for an unknown EAN": (
        [('target = "871687120001010064"', f'target = "{UNKNOWN}"')],
        f"contracts[7] ('c-elamrani'), field 'target': no connection or metering point with EAN {UNKNOWN}"),
    "overlapping contracts": (
        [("valid_from = 2026-07-01", "valid_from = 2026-06-01")],
        "contracts[2] ('c-bakker-dynamic'), field 'valid_from': 2026-06-01 falls in contracts[1] ('c-bakker-fixed')"),
    "open contract followed by another": (
        [("valid_to = 2026-07-01 ", "# open ")],
        "contracts[2] ('c-bakker-dynamic'), field 'valid_from': 2026-07-01 falls in contracts[1] ('c-bakker-fixed')"),
    "valid_to before valid_from": (
        [("valid_to = 2026-07-01 ", "valid_to = 2026-01-01 ")],
        "contracts[1] ('c-bakker-fixed'), field 'valid_to': 2026-01-01 is not after valid_from 2026-01-01"),
    "unknown plan": (
        [('plan = "nl-daynight-2026"', 'plan = "nl-daynight-2025"')],
        "contracts[5] ('c-moreau'), field 'plan': no built-in plan 'nl-daynight-2025'"),
    "missing plan file": (
        [('plan = "nl-daynight-2026"', 'plan = "plans/mine.toml"')],
        "contracts[5] ('c-moreau'), field 'plan': "),
    "no party for a role a plan pays": (
        [('roles = ["tax"]', 'roles = ["aggregator"]')],
        "contracts[0] ('c-devries'), field 'plan': plan 'nl-dynamic-2026' pays role tax (component 'energy_tax'), "
        "but no party has role tax"),
    "two parties for a role a plan pays": (
        [('roles = ["tax"]', 'roles = ["tax", "community"]')],
        "contracts[4] ('c-janssens'), field 'plan': plan 'jem-2.0' pays role community (component 'profile'), but "
        "parties 'belastingdienst', 'ginneken-energie' all have role community; exactly one may"),
    "unknown locale": (
        [('locale = "fr"', 'locale = "de"')],
        "participants[3] ('moreau'), field 'locale': 'de' is not one of 'nl', 'en' or 'fr'"),
    "bad e-mail": (
        [('email = "ruud.bakker@example.org"', 'email = "ruud.bakker.example.org"')],
        "participants[1] ('bakker'), field 'email': 'ruud.bakker.example.org' is not an e-mail address"),
    "misspelt field": (
        [('description = "Warmtepomp (eigen meter)"', 'descripton = "Warmtepomp"')],
        "metering_points[0] ('871687120001011023'), field 'descripton': unknown field (a typo?)"),
    "missing field": (
        [('capacity_kw = "27.6"                         # 3 x 40 A\n', "")],
        "connections[5] ('871687120001010064'), field 'capacity_kw': is required"),
    "capacity not positive": (
        [('capacity_kw = "27.6"', 'capacity_kw = "0"')],
        "connections[5] ('871687120001010064'), field 'capacity_kw': Input should be greater than 0"),
    "EAN as a number": (
        [(f'ean = "{HEAT_PUMP}"', f"ean = {HEAT_PUMP}")],
        f"metering_points[0] ({HEAT_PUMP}), field 'ean': {HEAT_PUMP} must be text in quotes"),
    "unknown role": (
        [('roles = ["supplier"] ', 'roles = ["retailer"] ')],
        "parties[1] ('warmtewerk'), field 'roles[0]': 'retailer' is not one of"),
    "bad id": (
        [('id = "c-moreau"', 'id = "C Moreau"')],
        "contracts[5] ('C Moreau'), field 'id': 'C Moreau' is not an id"),
    "bad time zone": (
        [('timezone = "Europe/Amsterdam"', 'timezone = "Europe/Breda"')],
        "community, field 'timezone': unknown time zone 'Europe/Breda'"),
    "misspelt section": (
        [("[[metering_points]]", "[[metering_point]]")],
        "section 'metering_point': unknown section (a typo?)"),
    "section as a table": (
        [("[[metering_points]]", "[metering_points]")],
        "section 'metering_points': write each entry as a [[table]]"),
}


@pytest.mark.parametrize("case", sorted(MISTAKES))
def test_mistake_gives_a_clear_error(tmp_path, case):
    edits, expected = MISTAKES[case]
    message = rejected(variant(tmp_path, *edits))
    assert f"{tmp_path / 'community.toml'}: {expected}" in message, message


def test_a_broken_plan_file_is_reported_with_the_plan_error(tmp_path):
    (tmp_path / "plans").mkdir()
    plan = _builtin_text("nl-fixed-2026").replace('id = "nl-fixed-2026"', 'id = "moreau-fixed"')
    plan = plan.replace('payee = "grid"', 'payee = "netbeheer"', 1)
    (tmp_path / "plans" / "moreau.toml").write_text(plan, encoding="utf-8")
    message = rejected(variant(tmp_path, ('plan = "nl-daynight-2026"', 'plan = "plans/moreau.toml"')))
    assert "community.toml: contracts[5] ('c-moreau'), field 'plan': " in message
    assert "moreau.toml: component 'grid' (components[2]), field 'payee':" in message


def test_every_mistake_is_reported_at_once(tmp_path):
    message = rejected(variant(tmp_path, ('locale = "fr"', 'locale = "de"'),
                               ('participant = "moreau"', 'participant = "moreaux"'),
                               ("valid_from = 2026-07-01", "valid_from = 2026-06-01")))
    # shape errors come first and stop there; fix them and the reference errors all show together
    assert message.count("\n") == 0 and "field 'locale'" in message
    message = rejected(variant(tmp_path, ('participant = "moreau"', 'participant = "moreaux"'),
                               ("valid_from = 2026-07-01", "valid_from = 2026-06-01"),
                               ('plan = "nl-daynight-2026"', 'plan = "nl-daynight-2025"')))
    assert len(message.splitlines()) == 3
    assert "field 'participant'" in message and "field 'valid_from'" in message and "field 'plan'" in message


def test_missing_community_table_not_toml_and_absent_file(tmp_path):
    text = EXAMPLE.read_text(encoding="utf-8")
    no_community = tmp_path / "a.toml"
    no_community.write_text(text[text.index("[[parties]]"):], encoding="utf-8")
    assert f"{no_community}: section 'community': is required" in rejected(no_community)
    broken = tmp_path / "b.toml"
    broken.write_text(text[: text.index('valid_from = 2026-02-15') + 20], encoding="utf-8")  # truncated
    assert f"{broken}: not valid TOML" in rejected(broken)
    assert f"{tmp_path / 'c.toml'}: cannot read the file" in rejected(tmp_path / "c.toml")


def _builtin_text(plan_id: str) -> str:
    return (resources.files("kwartier.tariffs") / "plans" / f"{plan_id}.toml").read_text(encoding="utf-8")


def test_plan_file_relative_to_the_definition(tmp_path):
    (tmp_path / "plans").mkdir()
    plan = _builtin_text("nl-fixed-2026").replace('id = "nl-fixed-2026"', 'id = "moreau-fixed"')
    (tmp_path / "plans" / "moreau.toml").write_text(plan, encoding="utf-8")
    d = load_definition(variant(tmp_path, ('plan = "nl-daynight-2026"', 'plan = "plans/moreau.toml"')))
    assert d.plans["c-moreau"].id == "moreau-fixed"
    assert d.plan_texts["c-moreau"].sha256 == hashlib.sha256(plan.encode("utf-8")).hexdigest()


# --- helpers for settlement ------------------------------------------------------------------------


def test_payee_resolution():
    d = load_definition(EXAMPLE)
    assert d.payee_party("c-devries", "supplier") == "zuidstroom"
    assert d.payee_party("c-bakker-heatpump", "supplier") == "warmtewerk"  # the heat pump's own supplier
    assert d.payee_party("c-bakker-heatpump", "grid") == "netbeheer-zuid"  # its parent connection's grid party
    assert d.payee_party(d.contract("c-janssens"), "tax") == "belastingdienst"
    assert d.payee_party("c-janssens", "community") == "ginneken-energie"
    assert d.payee_party("c-janssens", "aggregator") == "zuidstroom"  # supplier that is also aggregator
    with pytest.raises(NotInDefinition, match="no contract 'c-nobody'"):
        d.payee_party("c-nobody", "supplier")


def test_grid_payee_is_the_connections_own_grid_party(tmp_path):
    second = ('[[parties]]\nid = "netbeheer-west"\nroles = ["grid"]\nname = "Netbeheer West"\n\n'
              '[[parties]]\nid = "belastingdienst"')
    d = load_definition(variant(
        tmp_path, ('[[parties]]\nid = "belastingdienst"', second),
        ('participant = "elamrani"\ngrid_area = "Breda-Ginneken"\ncapacity_kw = "27.6"                         '
         '# 3 x 40 A\ngrid = "netbeheer-zuid"',
         'participant = "elamrani"\ngrid_area = "Breda-Noord"\ncapacity_kw = "27.6"\ngrid = "netbeheer-west"')))
    assert d.payee_party("c-elamrani", "grid") == "netbeheer-west"
    assert d.payee_party("c-devries", "grid") == "netbeheer-zuid"


def test_contracts_for_periods():
    d = load_definition(EXAMPLE)
    ids = lambda ean, a, b: [c.id for c in d.contracts_for(ean, a, b)]  # noqa: E731
    assert ids(HOUSE_BAKKER, date(2026, 6, 1), date(2026, 7, 1)) == ["c-bakker-fixed"]  # end exclusive
    assert ids(HOUSE_BAKKER, date(2026, 7, 1), date(2026, 8, 1)) == ["c-bakker-dynamic"]  # valid_to exclusive
    assert ids(HOUSE_BAKKER, date(2026, 6, 15), date(2026, 7, 15)) == ["c-bakker-fixed", "c-bakker-dynamic"]
    assert ids(HOUSE_BAKKER, date(2025, 1, 1), date(2026, 1, 1)) == []
    assert ids(HOUSE_BAKKER, date(2026, 12, 1), date(2027, 2, 1)) == ["c-bakker-dynamic"]
    # the heat pump's contract belongs to its own EAN only, and starts in March
    assert ids(HEAT_PUMP, date(2026, 2, 1), date(2026, 3, 1)) == []
    assert ids(HEAT_PUMP, date(2026, 2, 1), date(2026, 3, 2)) == ["c-bakker-heatpump"]
    assert ids("871687120001010033", date(2030, 1, 1), date(2030, 2, 1)) == ["c-janssens"]  # open-ended


def test_connection_and_participant_of_a_metering_point():
    d = load_definition(EXAMPLE)
    assert d.connection_of(HEAT_PUMP).ean == HOUSE_BAKKER
    assert d.participant_of(HEAT_PUMP).id == d.participant_of(HOUSE_BAKKER).id == "bakker"
    assert d.participant_of("871687120001010040").locale == "fr"
    assert d.metering_points_of("871687120001010019") == []
    with pytest.raises(NotInDefinition, match=UNKNOWN):
        d.connection_of(UNKNOWN)
    with pytest.raises(NotInDefinition):
        d.metering_points_of(HEAT_PUMP)  # a metering point is not a connection


# --- storage: versioned entities, plan texts, the load log -----------------------------------------


def _counts(engine) -> tuple[int, int, int]:
    with engine.connect() as conn:
        return tuple(conn.execute(select(func.count()).select_from(t)).scalar_one()  # type: ignore[return-value]
                     for t in (s.entities, s.community_loads, s.plan_texts))


def _entity_rows(engine, kind: str, key: str) -> list[tuple[int, bool, object]]:
    e = s.entities
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(select(e.c.version, e.c.is_current, e.c.data)
                                               .where(e.c.kind == kind, e.c.key == key).order_by(e.c.version))]


def test_load_twice_writes_nothing_the_second_time(engine):
    raw = tomllib.loads(EXAMPLE.read_text(encoding="utf-8"))
    entities = 1 + sum(len(raw[k]) for k in ("parties", "participants", "connections", "metering_points",
                                             "contracts"))
    plans = len({c["plan"] for c in raw["contracts"]})
    first = load_community(engine, EXAMPLE)
    assert (first.new, first.changed, first.unchanged, first.removed) == (entities, 0, 0, 0)
    assert first.to_json() == {"community": "ginneken-energie", "parties": len(raw["parties"]),
                               "participants": len(raw["participants"]), "connections": len(raw["connections"]),
                               "metering_points": 1, "contracts": len(raw["contracts"]), "new": entities,
                               "changed": 0, "unchanged": 0, "removed": 0}
    assert _counts(engine) == (entities, 1, plans)
    second = load_community(engine, EXAMPLE)
    assert (second.new, second.changed, second.unchanged, second.removed) == (0, 0, entities, 0)
    assert second.load_id is None and _counts(engine) == (entities, 1, plans)
    with engine.connect() as conn:
        log = conn.execute(select(s.community_loads)).one()
    assert log.sha256 == hashlib.sha256(EXAMPLE.read_bytes()).hexdigest() and log.summary == first.to_json()


def test_changed_and_removed_entities_become_new_versions(engine, tmp_path):
    load_community(engine, EXAMPLE)
    changed_file = variant(tmp_path, ('email = "ruud.bakker@example.org"', 'email = "ruud@example.org"'),
                           ('id = "c-oconnor"', 'id = "c-oconnor-old"'))  # keeps the file valid
    text = changed_file.read_text(encoding="utf-8")
    block = text[text.index('[[contracts]]\nid = "c-oconnor-old"'):text.index('[[contracts]]\nid = "c-elamrani"')]
    changed_file.write_text(text.replace(block, ""), encoding="utf-8")
    before = _counts(engine)[0]
    r = load_community(engine, changed_file)
    assert (r.new, r.changed, r.removed) == (0, 1, 1) and r.contracts == 7
    assert _counts(engine)[0] == before + 2
    bakker = _entity_rows(engine, "participant", "bakker")
    assert [(v, cur) for v, cur, _ in bakker] == [(1, False), (2, True)]
    assert bakker[0][2]["email"] == "ruud.bakker@example.org" and bakker[1][2]["email"] == "ruud@example.org"
    gone = _entity_rows(engine, "contract", "c-oconnor")
    assert [(v, cur) for v, cur, _ in gone] == [(1, False), (2, True)]
    assert gone[0][2]["plan"] == "nl-dynamic-2026" and gone[1][2] is None
    with engine.connect() as conn:  # a removal is stored as SQL NULL, not JSON null
        assert conn.execute(select(func.count()).select_from(s.entities)
                            .where(s.entities.c.data.is_(None))).scalar_one() == 1
    d = current_definition(engine)
    assert "c-oconnor" not in {c.id for c in d.spec.contracts}
    assert d.participant("bakker").email == "ruud@example.org"
    back = load_community(engine, EXAMPLE)  # the contract returns: a new version 3
    assert (back.new, back.changed, back.removed) == (1, 1, 0)
    assert [(v, cur) for v, cur, _ in _entity_rows(engine, "contract", "c-oconnor")][-1] == (3, True)
    assert _counts(engine)[1] == 3


def test_current_definition_round_trips_the_example(engine):
    load_community(engine, EXAMPLE)
    loaded, stored = load_definition(EXAMPLE), current_definition(engine)
    assert stored.spec == loaded.spec
    assert stored.plan_texts == loaded.plan_texts
    with engine.connect() as conn:
        data = conn.execute(select(s.entities.c.data).where(s.entities.c.key == "c-janssens")).scalar_one()
    assert data["plan_sha256"] == _builtin_sha("jem-2.0")
    assert stored.payee_party("c-janssens", "community") == "ginneken-energie"


def test_current_definition_keeps_the_plan_text_that_was_loaded(engine, tmp_path):
    (tmp_path / "plans").mkdir()
    plan_file = tmp_path / "plans" / "moreau.toml"
    original = _builtin_text("nl-fixed-2026").replace('id = "nl-fixed-2026"', 'id = "moreau-fixed"')
    plan_file.write_text(original, encoding="utf-8")
    path = variant(tmp_path, ('plan = "nl-daynight-2026"', 'plan = "plans/moreau.toml"'))
    load_community(engine, path)
    edited = original.replace('name = "Fixed price 2026 (NL)"', 'name = "Fixed price, edited"')
    assert edited != original
    plan_file.write_text(edited, encoding="utf-8")
    d = current_definition(engine)
    assert d.plan_texts["c-moreau"].text == original and d.plans["c-moreau"].plan.name == "Fixed price 2026 (NL)"
    r = load_community(engine, path)  # the contract's plan version changed: the contract is a new version
    assert (r.new, r.changed, r.removed) == (0, 1, 0)
    assert current_definition(engine).plans["c-moreau"].plan.name == "Fixed price, edited"
    assert _counts(engine)[2] == 5  # three built-in plans + two versions of the file plan


def test_a_rejected_file_writes_nothing(engine, tmp_path):
    with pytest.raises(DefinitionError):
        load_community(engine, variant(tmp_path, ('locale = "fr"', 'locale = "de"')))
    assert _counts(engine) == (0, 0, 0)
    with pytest.raises(DefinitionError, match="holds 0 communities"):
        current_definition(engine)


# --- the command line ------------------------------------------------------------------------------


def run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "kwartier.cli", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=120)


def test_cli_community_load(tmp_path):
    db = f"sqlite:///{tmp_path}/k.db"
    r = run("--db", db, "community", "load", str(EXAMPLE), "--json", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert set(out) == {"community", "parties", "participants", "connections", "metering_points", "contracts",
                        "new", "changed", "unchanged", "removed"}
    assert out["community"] == "ginneken-energie" and out["new"] == 27 and out["changed"] == 0
    again = run("--db", db, "community", "load", str(EXAMPLE), cwd=tmp_path)
    assert again.returncode == 0 and "0 new, 0 changed, 27 unchanged, 0 removed" in again.stdout
    bad = variant(tmp_path, ("valid_from = 2026-07-01", "valid_from = 2026-06-01"), name="bad.toml")
    r = run("--db", db, "community", "load", str(bad), "--json", cwd=tmp_path)
    assert r.returncode == 2 and r.stdout == ""
    assert "bad.toml: contracts[2] ('c-bakker-dynamic'), field 'valid_from'" in r.stderr


def test_the_readme_example_loads(tmp_path):
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("## A community"):]
    block = section[section.index("```toml\n") + 8:section.index("```\n", section.index("```toml\n") + 8)]
    path = tmp_path / "community.toml"
    path.write_text(block, encoding="utf-8")
    d = load_definition(path)
    assert d.payee_party("c-bakker-heatpump", "supplier") == "warmtewerk"
    assert d.participant_of(HEAT_PUMP).id == "bakker"
