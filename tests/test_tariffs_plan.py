"""Tariff plans: the five built-in plans, mistakes in plan files, and the safe expression grammar."""

from __future__ import annotations

import json
import re
from decimal import ROUND_HALF_UP, Decimal
from importlib import resources
from pathlib import Path

import pytest

from conftest import data_file
from kwartier.tariffs.expr import ExpressionError, parse
from kwartier.tariffs.plan import LoadedPlan, PlanError, builtin_ids, load_plan

BUILTIN = ["jem-2.0", "nl-daynight-2026", "nl-dynamic-2026", "nl-dynamic-2027", "nl-fixed-2026"]
D = Decimal


def _text(plan_id: str) -> str:
    return (resources.files("kwartier.tariffs") / "plans" / f"{plan_id}.toml").read_text(encoding="utf-8")


def _price(plan: LoadedPlan, cid: str, **series: str) -> Decimal:
    """A component's price (EUR per unit) for given series values, with the plan's parameters."""
    comp = next(c for c in plan.components if c.spec.id == cid)
    assert comp.price is not None
    env = plan.env_constants() | {k: D(v) for k, v in series.items()}
    return comp.price.evaluate(env)


def _bands(plan: LoadedPlan, cid: str = "energy_tax") -> list[tuple[Decimal | None, str]]:
    return [(b.up_to_kwh, b.price) for b in plan.plan.component(cid).bands or []]


# --- the built-in plans ---------------------------------------------------------------------------


def test_builtin_ids_lists_the_five_plans():
    assert builtin_ids() == BUILTIN


@pytest.mark.parametrize("plan_id", BUILTIN)
def test_builtin_plan_loads_by_id(plan_id):
    plan = load_plan(plan_id)
    assert plan.id == plan_id
    assert plan.where == f"built-in plan {plan_id}"
    assert plan.plan.timezone == "Europe/Amsterdam"
    assert plan.plan.currency == "EUR"
    assert 20 < len(plan.plan.description) < 400  # one or two plain sentences
    for comp in plan.plan.components:
        assert comp.labels.get("nl") and comp.labels.get("fr"), comp.id
        assert comp.label_in("nl") != comp.label_in("fr"), comp.id


def test_unknown_plan_id_names_the_builtin_ones():
    with pytest.raises(PlanError) as err:
        load_plan("nl-dynamic-2025")
    assert "'nl-dynamic-2025'" in str(err.value)
    assert "nl-dynamic-2026" in str(err.value) and "jem-2.0" in str(err.value)


def test_missing_plan_file_is_named(tmp_path):
    missing = tmp_path / "nowhere.toml"
    with pytest.raises(PlanError, match="no such plan file") as err:
        load_plan(missing)
    assert str(missing) in str(err.value)


# Keys whose values are numbers that need a source; inside [parameters] every key does.
_NUMBER_KEYS = {"price", "up_to_kwh", "default", "vat_rate", "windows"}
_ASSIGN = re.compile(r'^\s*\{?\s*([a-z_]+)\s*=\s*(\[?"[^"]*"|[-\d.]+)')
_LITERAL = re.compile(r"(?<![\w.])\d+(?:\.\d*)?|(?<![\w.])\.\d+")


@pytest.mark.parametrize("plan_id", BUILTIN)
def test_every_number_in_a_builtin_plan_cites_its_source(plan_id):
    """Each number carries a comment naming a source defined in the file header, or ILLUSTRATIVE."""
    lines = _text(plan_id).splitlines()
    tags = {m.group(1) for line in lines if (m := re.match(r"# \[([A-Z0-9]+)\]", line))}
    assert tags, "the header defines no sources"
    section = ""
    checked = 0
    for i, line in enumerate(lines):
        stripped = line.strip()
        if stripped.startswith("["):
            section = stripped
            continue
        m = _ASSIGN.match(line.split("#", 1)[0])
        if not m or stripped.startswith("#"):
            continue
        key, value = m.group(1), m.group(2).strip('["')
        if key not in _NUMBER_KEYS and section != "[parameters]":
            continue
        literals = [x for x in _LITERAL.findall(value) if key == "windows" or D(x) not in (0, 1)]
        if key == "price" and not literals:
            continue  # an expression of parameters and series only (0 and 1 are structure)
        if key == "default" and D(value) == 0:
            continue  # "no value = nothing": a definition, not a figure
        comment = line.split("#", 1)[1] if "#" in line else ""
        if not comment:  # else the block of comment lines right above
            j = i
            while j > 0 and lines[j - 1].lstrip().startswith("#"):
                j -= 1
            comment = "\n".join(lines[j:i])
        cited = set(re.findall(r"\[([A-Z0-9]+)\]", comment)) & tags
        assert cited or "ILLUSTRATIVE" in comment, f"{plan_id} line {i + 1}: {line.strip()!r} cites no source"
        for tag in re.findall(r"\[([A-Z0-9]+)\]", comment):
            assert tag in tags or tag.lower() == tag, f"{plan_id} line {i + 1}: [{tag}] is not defined in the header"
        checked += 1
    assert checked >= 5


# The 2026 energy-tax bands, EUR/kWh excl. VAT (Wbm art. 59 lid 1 onderdeel b, as in issue 3).
WBM59_2026 = [(D(10000), "0.09161"), (D(50000), "0.06671"), (None, "0.03735")]


@pytest.mark.parametrize("plan_id", ["nl-fixed-2026", "nl-daynight-2026", "nl-dynamic-2026", "nl-dynamic-2027"])
def test_energy_tax_bands_are_the_2026_rates(plan_id):
    plan = load_plan(plan_id)
    assert _bands(plan) == WBM59_2026
    tax = plan.plan.component("energy_tax")
    assert (tax.payee, tax.basis, tax.vat) == ("tax", "import_kwh", True)  # VAT is charged on the energy tax


def test_first_tax_band_and_markup_match_easyenergy_2026_response():
    """easyEnergy's 2026-04-19 response states tax and markup incl. VAT: 0.09161 and 0.0180 excl. VAT."""
    rows = json.loads(data_file("prices_nl/easyenergy_fixtures/energy.json").read_text(encoding="utf-8"),
                      parse_float=Decimal)["prices"]
    assert {r["energyTax"] for r in rows} == {D("0.11085")}
    assert {r["purchasePrice"] for r in rows} == {D("0.02178")}
    for plan_id in ["nl-fixed-2026", "nl-daynight-2026", "nl-dynamic-2026"]:
        first_band = D(_bands(load_plan(plan_id))[0][1])
        assert (first_band * D("1.21")).quantize(D("0.00001"), ROUND_HALF_UP) == D("0.11085")
    assert D(load_plan("jem-2.0").plan.parameters["tax_eur_per_kwh"]) * D("1.21") == D("0.1108481")
    for plan_id in ["nl-dynamic-2026", "nl-dynamic-2027", "jem-2.0"]:
        assert load_plan(plan_id).plan.parameters["supply_markup"] * D("1.21") == D("0.02178")


@pytest.mark.parametrize("plan_id", BUILTIN)
def test_vat_tax_reduction_and_grid_charge(plan_id):
    plan = load_plan(plan_id)
    assert plan.plan.vat_rate == D("0.21")  # Wet OB 1968 art. 9 lid 1
    red = plan.plan.component("tax_reduction")
    assert (red.payee, red.basis) == ("tax", "per_year")
    assert _price(plan, "tax_reduction") == D("-519.80")  # Wbm art. 63, 2026, excl. VAT
    assert (_price(plan, "tax_reduction") * D("1.21")).quantize(D("0.01")) == D("-628.96")  # published incl. VAT
    grid = plan.plan.component("grid")
    assert (grid.payee, grid.basis) == ("grid", "per_day")
    assert _price(plan, "grid") == D("0.95")  # illustrative Liander 3x25A figure, see the plan header


def test_netting_only_in_2026():
    for plan_id in ["nl-fixed-2026", "nl-daynight-2026", "nl-dynamic-2026"]:
        plan = load_plan(plan_id)
        assert plan.plan.netting == "annual"
        assert plan.plan.component("energy_tax").netted
    for plan_id in ["nl-dynamic-2027", "jem-2.0"]:
        plan = load_plan(plan_id)
        assert plan.plan.netting == "none"
        assert not any(c.netted for c in plan.plan.components)
    assert load_plan("nl-fixed-2026").plan.component("supply").netted


def test_fixed_plan_prices():
    plan = load_plan("nl-fixed-2026")
    assert _price(plan, "supply") == D("0.1250")
    assert _price(plan, "supplier_fee") == D("5.95")
    assert plan.plan.component("supplier_fee").basis == "per_month"


def test_daynight_dal_hours_and_prices():
    plan = load_plan("nl-daynight-2026")
    (dal,) = plan.plan.series
    assert (dal.id, dal.kind, dal.windows, dal.weekend) == ("dal", "calendar", ["23:00-07:00"], True)
    assert _price(plan, "supply", dal="0") == D("0.1320")  # normal
    assert _price(plan, "supply", dal="1") == D("0.1180")  # dal
    # Per-register netting: feed-in is credited at the supply price of its own quarter.
    for flag in ("0", "1"):
        assert _price(plan, "feed_in", dal=flag) == -_price(plan, "supply", dal=flag)


def test_dynamic_2026_supply_and_feed_in():
    plan = load_plan("nl-dynamic-2026")
    assert _price(plan, "supply", market="0.10") == D("0.1180")  # market + 0.0180
    assert _price(plan, "feed_in", market="0.10") == D("-0.0850")  # paid market - 0.0150
    assert _price(plan, "feed_in", market="0.01") == D("0.0050")  # below the fee: the household pays
    assert plan.plan.component("feed_in").vat
    assert plan.plan.component("supply").fixed == "day-ahead"


@pytest.mark.parametrize(("market", "paid"), [("0.10", "0.085"), ("0.02", "0.019"), ("-0.05", "0")])
def test_dynamic_2027_feed_in_floor_worked_values(market, paid):
    """The worked values in the plan's header: market minus fee, the 50 % floor, and never negative."""
    plan = load_plan("nl-dynamic-2027")
    assert _price(plan, "feed_in", market=market) == -D(paid)


def test_dynamic_2027_household_never_pays_for_feed_in():
    plan = load_plan("nl-dynamic-2027")
    assert plan.plan.parameters["feed_in_floor"] == D("0.50")  # Kamerstuk 36611, amendment Grinwis c.s.
    floor = plan.plan.parameters["feed_in_floor"]
    for cents in range(-60, 61):
        market = D(cents) / 100
        price = _price(plan, "feed_in", market=str(market))
        assert price <= 0  # the household is paid, or nothing
        supply = _price(plan, "supply", market=str(market))
        if supply > 0:
            assert -price >= floor * supply  # at least half the bare supply price
    # The formula proposed in the issue would charge the household 0.016 EUR/kWh at market -0.05:
    naive = parse("-max(market - feed_in_fee, feed_in_floor * (market + supply_markup))", plan.plan.names())
    assert naive.evaluate(plan.env_constants() | {"market": D("-0.05")}) == D("0.016")
    assert not plan.plan.component("feed_in").vat


def test_jem_context_factors():
    plan = load_plan("jem-2.0")
    series = {s.id: s for s in plan.plan.series}
    cong = series["congestion"]
    assert (cong.kind, cong.fixed, cong.default, cong.unit) == ("input", "PT4H", D(0), "EUR/kWh")
    share = series["energy_tax_share"]
    assert (share.kind, share.rule, share.fixed) == ("derived", "previous_month_tax_share", "month-start")
    prof = series["profile"]
    assert (prof.kind, prof.fixed, prof.default) == ("input", "month-start", D(0))
    tax = plan.plan.component("energy_tax")
    assert (tax.basis, tax.of, tax.price, tax.payee) == ("percent", ["supply"], "energy_tax_share", "tax")
    assert plan.plan.component("congestion").payee == "grid"
    assert plan.plan.component("profile").payee == "community"
    assert plan.plan.parameters["tax_eur_per_kwh"] == D("0.09161")
    assert not any("storag" in c.id for c in plan.plan.components)  # storage is steered, not charged
    assert "storage" in _text("jem-2.0").lower()


def test_jem_import_and_export_see_the_same_congestion_value():
    """A battery sees one price: a congestion euro costs on import exactly what it earns on export."""
    plan = load_plan("jem-2.0")

    def import_price(c: str) -> Decimal:
        return sum((_price(plan, cid, market="0.08", congestion=c) for cid in ("supply", "supply_markup",
                                                                               "congestion")), D(0))

    def export_paid(c: str) -> Decimal:
        return -(_price(plan, "feed_in", market="0.08") + _price(plan, "feed_in_congestion", congestion=c))

    assert import_price("0.05") - import_price("0") == D("0.05")
    assert export_paid("0.05") - export_paid("0") == D("0.05")
    assert import_price("-0.03") - import_price("0") == D("-0.03")
    assert export_paid("-0.03") - export_paid("0") == D("-0.03")


# --- mistakes in plan files -----------------------------------------------------------------------

BASE = """\
id = "test-plan"
name = "Test plan"
vat_rate = "0.21"
timezone = "Europe/Amsterdam"
netting = "none"

[parameters]
markup = "0.0180"

[[series]]
id = "dal"
label = "Dal"
kind = "calendar"
windows = ["23:00-07:00"]
weekend = true

[[components]]
id = "supply"
label = "Supply"
payee = "supplier"
basis = "import_kwh"
price = "market + markup * (1 - dal)"

[[components]]
id = "grid"
label = "Grid"
payee = "grid"
basis = "per_day"
price = "0.95"

[[components]]
id = "energy_tax"
label = "Energy tax"
payee = "tax"
basis = "import_kwh"
bands = [{ up_to_kwh = "10000", price = "0.09161" }, { up_to_kwh = "50000", price = "0.06671" }, { price = "0.03735" }]

[[components]]
id = "levy"
label = "Levy"
payee = "community"
basis = "percent"
of = ["supply"]
price = "0.10"
"""

LATE = '\n[[components]]\nid = "late"\nlabel = "Late"\npayee = "grid"\nbasis = "per_month"\nprice = "1"\n'
LEVY2 = ('\n[[components]]\nid = "levy2"\nlabel = "Levy 2"\npayee = "tax"\nbasis = "percent"\nof = ["levy"]\n'
         'price = "0.1"\n')
GRID = "component 'grid' (components[1])"
TAX = "component 'energy_tax' (components[2])"
LEVY = "component 'levy' (components[3])"
SUPPLY = "component 'supply' (components[0])"


def _write(tmp_path: Path, edits: list[tuple[str, str]], append: str = "") -> Path:
    text = BASE
    for old, new in edits:
        assert text.count(old) == 1, f"{old!r} must occur once in BASE"
        text = text.replace(old, new)
    p = tmp_path / "my-plan.toml"
    p.write_text(text + append, encoding="utf-8")
    return p


def _error(path: Path) -> str:
    with pytest.raises(PlanError) as err:
        load_plan(path)
    return str(err.value)


def test_base_plan_for_mistakes_loads(tmp_path):
    plan = load_plan(_write(tmp_path, []))
    assert [c.spec.id for c in plan.components] == ["supply", "grid", "energy_tax", "levy"]


MISTAKES = [
    # (name, edits, appended text, fragments the message must hold besides the file name)
    ("missing required field", [('payee = "grid"\n', "")], "", [GRID, "field 'payee'", "is required"]),
    ("unknown field (typo)", [('price = "0.95"', 'prise = "0.95"')], "", [GRID, "field 'prise'", "unknown field"]),
    ("bad payee", [('payee = "grid"', 'payee = "netbeheerder"')], "", [GRID, "field 'payee'", "'community'"]),
    ("bad basis", [('basis = "per_day"', 'basis = "per_week"')], "", [GRID, "field 'basis'", "'per_year'"]),
    ("unknown name", [("market + markup", "markt + markup")], "",
     [SUPPLY, "field 'price'", "unknown name 'markt'", "known: dal, market, markup"]),
    ("eval-style injection", [('"0.95"', "\"__import__('os').system('true')\"")], "",
     [GRID, "field 'price'", "only min(...) and max(...) may be called"]),
    ("attribute access", [("market + markup", "market.real + markup")], "",
     [SUPPLY, "field 'price'", "'market.real' is not allowed"]),
    ("dunder name", [('"0.95"', '"__builtins__"')], "", [GRID, "field 'price'", "unknown name '__builtins__'"]),
    ("float exponent", [('"0.95"', '"1e3"')], "", [GRID, "field 'price'", "'1e3' as a plain decimal"]),
    ("price given as a TOML float", [('price = "0.95"', "price = 0.95")], "",
     [GRID, "field 'price'", "valid string"]),
    ("both price and bands", [('basis = "import_kwh"\nbands', 'basis = "import_kwh"\nprice = "0.1"\nbands')], "",
     [TAX, "price or bands"]),
    ("bands not increasing", [('up_to_kwh = "50000"', 'up_to_kwh = "5000"')], "",
     [TAX, "bands", "up_to_kwh must be positive and increasing"]),
    ("band price reads an unknown name", [('price = "0.06671"', 'price = "0.06671 + tax"')], "",
     [TAX, "field 'bands[1].price'", "unknown name 'tax'"]),
    ("percent without of", [('of = ["supply"]\n', "")], "", [LEVY, "basis percent needs of"]),
    ("of names a later component", [('of = ["supply"]', 'of = ["supply", "late"]')], LATE,
     [LEVY, "field 'of[1]'", "'late' is not a component defined before it"]),
    ("of names an unknown component", [('of = ["supply"]', 'of = ["suply"]')], "",
     [LEVY, "field 'of[0]'", "'suply'", "defined before: supply, grid, energy_tax"]),
    ("duplicate component id", [('id = "grid"', 'id = "supply"')], "", ["supply", "already the id", "field 'id'"]),
    ("bad timezone", [('"Europe/Amsterdam"', '"Europe/Amsterdm"')], "",
     ["field 'timezone'", "unknown time zone 'Europe/Amsterdm'"]),
    ("vat_rate as a percentage", [('vat_rate = "0.21"', "vat_rate = 21")], "",
     ["field 'vat_rate'", "write 0.21 for 21 %"]),
    ("per_day price reads market", [('"0.95"', '"market * 24"')], "",
     [GRID, "field 'price'", "per_day price cannot read the series market"]),
    ("annual netting without a netted component", [('netting = "none"', 'netting = "annual"')], "",
     ["netting = 'annual' but no component has netted = true"]),
    ("bad window", [('"23:00-07:00"', '"23:00-7:00"')], "", ["series[0]", "field 'windows'", "'23:00-7:00'"]),
    ("bad fixed", [('price = "0.95"', 'price = "0.95"\nfixed = "daily"')], "", [GRID, "field 'fixed'", "'daily'"]),
    ("netted per_day component", [('price = "0.95"', 'price = "0.95"\nnetted = true')], "",
     [GRID, "only an import_kwh component can be netted"]),
    ("parameter not a finite number", [('markup = "0.0180"', 'markup = "NaN"')], "",
     ["field 'parameters.markup'", "finite"]),
    ("bad component id", [('id = "grid"', 'id = "Grid fee"')], "", ["components[1]", "field 'id'", "pattern"]),
]


@pytest.mark.parametrize(("edits", "append", "fragments"), [m[1:] for m in MISTAKES], ids=[m[0] for m in MISTAKES])
def test_mistake_in_plan_file_names_file_component_and_field(tmp_path, edits, append, fragments):
    path = _write(tmp_path, edits, append)
    message = _error(path)
    assert message.startswith(str(path))
    for fragment in fragments:
        assert fragment in message


def test_toml_syntax_error_names_file_and_line(tmp_path):
    path = _write(tmp_path, [('price = "0.95"', 'price = "0.95')])
    line = BASE.splitlines().index('price = "0.95"') + 1
    message = _error(path)
    assert message.startswith(f"{path}: not valid TOML")
    assert f"line {line}" in message


# Gaps in plan.py / expr.py found while writing these tests, now fixed.


def test_duplicate_component_id_names_index_and_field(tmp_path):
    message = _error(_write(tmp_path, [('id = "grid"', 'id = "supply"')]))
    assert "components[1]" in message and "field 'id'" in message


def test_of_naming_a_percent_component_names_the_index(tmp_path):
    message = _error(_write(tmp_path, [], LEVY2))
    assert "'levy' is itself a percent" in message
    assert "component 'levy2' (components[4])" in message


def test_duplicate_series_id_is_rejected(tmp_path):
    extra = '\n[[series]]\nid = "dal"\nlabel = "Dal 2"\nkind = "calendar"\nweekend = true\n'
    path = _write(tmp_path, [("[[components]]\nid = \"supply\"", extra + "[[components]]\nid = \"supply\"")])
    assert "dal" in _error(path)


def test_series_named_market_is_rejected(tmp_path):
    path = _write(tmp_path, [('id = "dal"', 'id = "market"'), ("(1 - dal)", "(1 - market)")])
    assert "market" in _error(path)


def test_deeply_nested_expression_is_a_plan_error(tmp_path):
    path = _write(tmp_path, [('"0.95"', '"' + "-" * 1200 + '0.95"')])
    assert "price" in _error(path)


# --- the expression grammar -------------------------------------------------------------------------


def _eval(text: str, **names: str) -> Decimal:
    return parse(text, set(names)).evaluate({k: D(v) for k, v in names.items()})


def test_decimals_are_exact():
    assert _eval("0.1 + 0.2") == D("0.3")
    assert str(_eval("0.1 + 0.2")) == "0.3"
    assert 0.1 + 0.2 != 0.3  # what binary floats would have given
    assert _eval("market * 3", market="0.1") == D("0.3")
    assert _eval("0.0181 * 1.21") == D("0.021901")
    assert _eval("1 / 8") == D("0.125")


@pytest.mark.parametrize(
    ("text", "value"),
    [("min(0.2, 0.1)", "0.1"), ("max(0.2, 0.1)", "0.2"), ("max(-1, -2, -3)", "-1"), ("min(3, 1, 2)", "1"),
     ("max(min(market, 0.5), 0)", "0.3"), ("min(market, 0) + max(market, 0)", "0.3"),
     ("max(market - 1, 0.5 * market)", "0.15")],
)
def test_min_and_max(text, value):
    assert _eval(text, market="0.3") == D(value)


@pytest.mark.parametrize(
    ("text", "value"),
    [("-market", "-0.05"), ("--market", "0.05"), ("-(1 - 3)", "2"), ("1 - -1", "2"), ("+market", "0.05"),
     ("-2 * -3", "6"), ("-market * 2", "-0.10"), ("-max(market, 0.1)", "-0.1")],
)
def test_unary_minus(text, value):
    assert _eval(text, market="0.05") == D(value)


@pytest.mark.parametrize(
    ("text", "value"),
    [("1 + 2 * 3", "7"), ("(1 + 2) * 3", "9"), ("10 - 4 - 3", "3"), ("10 - (4 - 3)", "9"), ("8 / 4 / 2", "1"),
     ("8 / (4 / 2)", "4"), ("2 + 6 / 3", "4"), ("-2 + 3", "1"), ("1 - 2 * 3 + 4", "-1")],
)
def test_precedence_and_associativity(text, value):
    assert _eval(text) == D(value)


def test_division_by_zero_names_the_values():
    expr = parse("markup / (market - 0.05)", {"market", "markup"})
    with pytest.raises(ExpressionError) as err:
        expr.evaluate({"market": D("0.05"), "markup": D("0.02")})
    assert "divides by zero" in str(err.value)
    assert "market = 0.05" in str(err.value) and "markup = 0.02" in str(err.value)
    with pytest.raises(ExpressionError, match="divides by zero"):
        _eval("market / market", market="0")  # 0/0 is undefined, reported the same way


def test_names_read_are_recorded():
    assert parse("max(market - fee, 0.5 * market)", {"market", "fee", "unused"}).names == {"market", "fee"}
    assert parse("0.95", {"market"}).is_constant()


@pytest.mark.parametrize(
    "text",
    ["1e3", "1E-2", "1_000", "0x10", "2 ** 3", "5 % 2", "7 // 2", "market > 0", "True", "None", "'0.1'", "1j",
     "market.real", "__import__('os')", "(lambda: 1)()", "[1][0]", "(1, 2)", "max(*[1, 2])", "min(a=1, b=2)",
     "min(1)", "min", "abs(-1)", "market if market else 0", "markt", "", "   ", "1 +", "market; 1"],
)
def test_outside_the_grammar_is_rejected(text):
    with pytest.raises(ExpressionError):
        parse(text, {"market"})


def test_unknown_name_lists_the_known_ones():
    with pytest.raises(ExpressionError, match=r"unknown name 'markt' \(known: fee, market\)"):
        parse("markt - fee", {"market", "fee"})
