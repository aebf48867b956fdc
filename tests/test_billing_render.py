"""Tests for kwartier.billing.render: the informative bill as HTML and PDF in nl, en and fr."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import re
import threading
from datetime import date, timedelta
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, HTTPServer

import pypdf
import pytest

from kwartier.billing.model import Address, Buyer, Informative, Invoice, InvoiceLine, Seller, VatBreakdown
from kwartier.billing.render import daily_cost_svg, render_html, render_pdf

EAN = "871687120054321012"
VAT = Decimal("0.21")


def _line(line_id: str, section: str, component: str, label: str, quantity: str, unit: str, cents: int,
          meter: str | None = EAN) -> InvoiceLine:
    qty = Decimal(quantity)
    return InvoiceLine(
        line_id=line_id, section=section, component=component, label=label, meter=meter, quantity=qty, unit=unit,
        unit_price=(Decimal(cents) / 100 / qty).quantize(Decimal("0.000001")), amount_cents=cents,
        vat_category="S", vat_rate=VAT,
        inputs_hash=hashlib.sha256(f"readings+prices+plan {line_id}".encode()).hexdigest())


# A household on nl-dynamic-2026 for April 2026 (30 days). Hand-checked sums:
#   supply 37.12 - feed-in 12.54 + fee 4.95 + grid 28.50 + energy tax 28.62 - tax reduction 42.72 = 43.93 net;
#   VAT 21 % of 43.93 = 9.2253 -> 9.23; total 53.16.
LINES = (
    _line("L1", "supplier", "supply", "Levering tegen marktprijs plus inkoopvergoeding", "312.456", "kWh", 3712),
    _line("L2", "supplier", "feed_in", "Terugleververgoeding", "187.250", "kWh", -1254),
    _line("L3", "supplier", "supplier_fee", "Vaste leveringskosten", "1", "month", 495),
    _line("L4", "grid", "grid", "Netbeheerkosten (3x25A)", "30", "day", 2850),
    _line("L5", "tax", "energy_tax", "Energiebelasting", "312.456", "kWh", 2862),
    _line("L6", "tax", "tax_reduction", "Vermindering energiebelasting", "0.082192", "year", -4272),
)
NET, VAT_CENTS, TOTAL = 4393, 923, 5316
# The amounts as each locale writes them (typed by hand, not produced by the renderer's helpers).
EXPECTED = {
    "nl": {"total": "€ 53,16", "vat": "€ 9,23", "net": "€ 43,93", "rate": "21%", "vat_word": "btw",
           "sections": ["Levering", "Netbeheer", "Belastingen"], "title": "Factuur", "credit": "Creditnota",
           "corrects": "Corrigeert factuur 2026-000101", "period": "1 april 2026 t/m 30 april 2026",
           "due": "15 mei 2026"},
    "en": {"total": "€53.16", "vat": "€9.23", "net": "€43.93", "rate": "21%", "vat_word": "VAT",
           "sections": ["Supply", "Grid operator", "Taxes"], "title": "Invoice", "credit": "Credit note",
           "corrects": "Corrects invoice 2026-000101", "period": "1 April 2026 to 30 April 2026",
           "due": "15 May 2026"},
    "fr": {"total": "53,16 €", "vat": "9,23 €", "net": "43,93 €", "rate": "21 %", "vat_word": "TVA",
           "sections": ["Fourniture", "Gestionnaire de réseau", "Taxes"], "title": "Facture", "credit": "Avoir",
           "corrects": "Rectifie la facture 2026-000101", "period": "du 1 avril 2026 au 30 avril 2026",
           "due": "15 mai 2026"},
}
# Daily costs incl. VAT for April 2026, summing to the total; sunny days go below zero.
DAILY = tuple((date(2026, 4, 1) + timedelta(days=i), c) for i, c in enumerate(
    [336, 321, 286, 206, 121, -40, -85, 146, 266, 306, 331, 176, -20, -110, -65, 116, 226, 286, 301, 256, 166,
     86, -30, 71, 206, 276, 316, 326, 296, 243]))


def household_invoice(name: str = "Fam. de Vries", locale: str = "nl") -> Invoice:
    return Invoice(
        number="2026-000123", kind="invoice", issue_date=date(2026, 5, 1), due_date=date(2026, 5, 15),
        period="2026-04", period_start=date(2026, 4, 1), period_end=date(2026, 5, 1),
        seller=Seller(id="coop", name="Energiecoöperatie Zonnewijk", vat_id="NL859612345B01",
                      address=Address("NL", "Dorpsstraat 12", "Zwolle", "8011 AB"), iban="NL91ABNA0417164300"),
        buyer=Buyer(id="P-0042", name=name, email="devries@example.org", locale=locale,
                    address=Address("NL", "Zonnebloemlaan 7", "Zwolle", "8017 CD")),
        connections=(EAN,), product="Dynamic price 2026 (NL)", lines=LINES,
        vat=(VatBreakdown(category="S", rate=VAT, base_cents=NET, vat_cents=VAT_CENTS),),
        payment_reference="RF18 2026 0001 23")


def household_informative() -> Informative:
    return Informative(
        import_kwh=Decimal("312.456"), export_kwh=Decimal("187.250"), average_eur_per_kwh=Decimal("0.17014"),
        community_average_eur_per_kwh=Decimal("0.22140"), percentile=78, reference_plan="Fixed price 2026 (NL)",
        reference_total_cents=8841, no_netting_total_cents=7395, daily_cost_cents=DAILY)


def credit_note() -> Invoice:
    base = household_invoice()
    negated = tuple(dataclasses.replace(ln, amount_cents=-ln.amount_cents, line_id=f"C{ln.line_id}") for ln in LINES)
    return dataclasses.replace(
        base, number="2026-000130", kind="credit_note", references="2026-000101", lines=negated,
        vat=(VatBreakdown(category="S", rate=VAT, base_cents=-NET, vat_cents=-VAT_CENTS),))


def _flat(text: str) -> str:
    """Text with Babel's no-break and narrow no-break spaces as plain spaces, runs of white space as one."""
    return re.sub(r"\s+", " ", text.replace("\u00a0", " ").replace("\u202f", " "))


def pdf_text(pdf: bytes) -> str:
    return _flat(" ".join(page.extract_text() for page in pypdf.PdfReader(io.BytesIO(pdf)).pages))


def test_model_sums_match_the_hand_computed_totals() -> None:
    inv = household_invoice()
    assert (inv.net_total_cents, inv.vat_total_cents, inv.total_cents) == (NET, VAT_CENTS, TOTAL)
    assert sum(c for _, c in DAILY) == TOTAL


@pytest.mark.parametrize("lang", ["nl", "en", "fr"])
def test_html_has_number_total_vat_and_sections_per_locale(lang: str) -> None:
    exp = EXPECTED[lang]
    html = render_html(household_invoice(), household_informative(), lang)
    flat = _flat(html)
    assert f'<html lang="{lang}">' in html
    assert "2026-000123" in flat
    assert exp["title"] in flat
    assert flat.count(exp["total"]) >= 2  # the amount due and the total of the specification
    assert exp["vat"] in flat and exp["net"] in flat
    assert f"{exp['vat_word']} {exp['rate']}".lower() in flat.lower()
    assert exp["period"] in flat and exp["due"] in flat
    positions = [flat.index(f"<h3>{heading}</h3>") for heading in exp["sections"]]
    assert positions == sorted(positions)  # supplier, grid, tax, in that order
    assert EAN in flat and "RF18 2026 0001 23" in flat


def test_buyer_locale_is_the_default() -> None:
    html = render_html(household_invoice(locale="fr"), None)
    assert '<html lang="fr">' in html and "Fourniture" in html and "53,16" in _flat(html)
    assert '<html lang="en">' in render_html(household_invoice(locale="en_GB"), None)


def test_unknown_locale_is_refused() -> None:
    with pytest.raises(ValueError, match=r"'de'.*nl, en and fr"):
        render_html(household_invoice(), None, "de")


def test_line_shows_label_meter_quantity_average_price_and_amount() -> None:
    flat = _flat(render_html(household_invoice(), None, "nl"))
    row = flat[flat.index("Levering tegen marktprijs"):]
    row = row[: row.index("</tr>")]
    assert EAN in row and "312,456 kWh" in row
    assert "€ 0,11880 per kWh" in row  # 37.12 / 312.456 = 0.118801... EUR/kWh, five decimals
    assert "€ 37,12" in row
    reduction = flat[flat.index("Vermindering energiebelasting"):]
    assert "€ -42,72" in reduction[: reduction.index("</tr>")]
    assert "30 dagen" in flat and "1 maand" in flat


def test_section_order_includes_community_and_aggregator() -> None:
    extra = (
        _line("L7", "aggregator", "flex", "Flexibiliteitsvergoeding", "12.5", "kWh", -150),
        _line("L8", "community", "profile", "Gemeenschapsbonus", "312.456", "kWh", -312),
    )
    inv = dataclasses.replace(household_invoice(), lines=LINES + extra)
    flat = _flat(render_html(inv, None, "en"))
    headings = ["Supply", "Grid operator", "Taxes", "Energy community", "Aggregator"]
    positions = [flat.index(f"<h3>{h}</h3>") for h in headings]
    assert positions == sorted(positions)


def test_informative_part() -> None:
    flat = _flat(render_html(household_invoice(), household_informative(), "en"))
    assert "€0.17 per kWh, all in" in _flat(re.sub("<[^>]+>", " ", flat)) and "€0.22" in flat
    assert "You paid less per kWh than 78% of the members." in flat
    # The fixed plan would have cost 88.41: 35.25 more; without net metering 73.95: 20.79 more.
    assert "Fixed price 2026 (NL)" in flat and "€88.41" in flat and "€35.25 more than this invoice" in flat
    assert "Without net metering (rules from 2027)" in flat and "€73.95" in flat
    assert "€20.79 more than this invoice" in flat
    assert "312.456 kWh" in flat and "187.25 kWh" in flat


def test_informative_part_is_absent_without_informative() -> None:
    html = render_html(household_invoice(), None, "en")
    assert "Your energy at a glance" not in html and "<svg" not in html


def test_chart_has_one_bar_per_day_with_negative_days_below_the_axis() -> None:
    html = render_html(household_invoice(), household_informative(), "nl")
    svg = html[html.index("<svg"): html.index("</svg>")]
    bars = re.findall(r'<rect class="(bar(?: neg)?)"[^>]*y="([\d.]+)"[^>]*height="([\d.]+)"', svg)
    assert len(bars) == len(DAILY) == 30
    assert [kind == "bar neg" for kind, _, _ in bars] == [c < 0 for _, c in DAILY]
    axis_y = float(re.search(r'<line x1="[\d.]+" y1="([\d.]+)"[^>]*stroke="#4a5361"', svg).group(1))
    for (_, y, h), (_, cents) in zip(bars, DAILY, strict=True):
        top, bottom = float(y), float(y) + float(h)
        if cents < 0:
            assert top == pytest.approx(axis_y, abs=0.15) and bottom > axis_y
        else:
            assert bottom == pytest.approx(axis_y, abs=0.15)
    # Heights are proportional to the cost, above and below the axis alike.
    heights = {cents: float(h) for (_, _, h), (_, cents) in zip(bars, DAILY, strict=True)}
    assert heights[336] / heights[-110] == pytest.approx(336 / 110, rel=0.01)
    assert "<script" not in svg and "href" not in svg


def test_chart_of_a_single_day_and_of_zero_costs() -> None:
    assert daily_cost_svg([(date(2026, 4, 1), 0)]).count('<rect class="bar"') == 1
    assert daily_cost_svg([(date(2026, 4, 1), -500)], "fr").count('<rect class="bar neg"') == 1


def test_credit_note_shows_the_invoice_it_corrects() -> None:
    for lang in ("nl", "en", "fr"):
        exp = EXPECTED[lang]
        flat = _flat(render_html(credit_note(), None, lang))
        assert exp["credit"] in flat and exp["corrects"] in flat and "2026-000130" in flat
        assert exp["total"] in flat  # the amount is shown as what the customer receives
    flat = _flat(render_html(credit_note(), None, "nl"))
    assert "Je ontvangt" in flat and "€ -53,16" in flat  # the specification keeps the sign


def test_html_escapes_the_participant_name() -> None:
    name = 'Jan <script>alert("x")</script> & Zn.'
    html = render_html(household_invoice(name=name), household_informative(), "nl")
    assert "<script" not in html
    assert "Jan &lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt; &amp; Zn." in html


def test_html_is_self_contained() -> None:
    html = render_html(household_invoice(), household_informative(), "nl")
    assert "<style>" in html and "@page" in html and "size: A4" in html
    assert "counter(page)" in html and "counter(pages)" in html
    assert not re.search(r'(?:src|href)\s*=|url\(|@import|<link', html)


@pytest.mark.parametrize("lang", ["nl", "en", "fr"])
def test_pdf_renders_with_number_total_and_vat(lang: str) -> None:
    exp = EXPECTED[lang]
    pdf = render_pdf(render_html(household_invoice(), household_informative(), lang))
    assert pdf.startswith(b"%PDF-")
    reader = pypdf.PdfReader(io.BytesIO(pdf))
    pages = len(reader.pages)
    assert 2 <= pages <= 4
    box = reader.pages[0].mediabox
    assert (round(float(box.width) * 25.4 / 72), round(float(box.height) * 25.4 / 72)) == (210, 297)  # A4 in mm
    text = pdf_text(pdf)
    assert "2026-000123" in text
    assert exp["total"] in text
    assert exp["vat_word"].lower() in text.lower() and exp["vat"] in text
    assert f"1/{pages}" in text and f"{pages}/{pages}" in text  # page numbers in the footer


def test_mixed_vat_rates_and_unknown_sections_are_shown_not_dropped() -> None:
    exempt = dataclasses.replace(_line("L9", "metering", "meter_rent", "Meterhuur", "30", "day", 90),
                                 vat_category="E", vat_rate=Decimal("0"))
    inv = dataclasses.replace(household_invoice(), lines=(*LINES, exempt), vat=(
        VatBreakdown(category="S", rate=VAT, base_cents=NET, vat_cents=VAT_CENTS),
        VatBreakdown(category="E", rate=Decimal("0"), base_cents=90, vat_cents=0)))
    flat = _flat(render_html(inv, None, "nl"))
    assert "<h3>Metering</h3>" in flat and flat.index("<h3>Metering</h3>") > flat.index("<h3>Belastingen</h3>")
    assert "Meterhuur" in flat and "€ 0,90" in flat
    assert "<th class=\"num\">Btw</th>" in flat  # a VAT column once the lines have more than one rate
    assert "Btw vrijgesteld over € 0,90" in flat
    assert "€ 54,06" in flat  # 53.16 + 0.90 exempt


def test_pdf_fetches_nothing() -> None:
    """A page that names an external image and stylesheet on a local server: the server is never asked."""
    requests: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            requests.append(self.path)
            self.send_response(404)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_port}"
        html = render_html(household_invoice(), None, "en").replace(
            "</head>", f'<link rel="stylesheet" href="{url}/x.css"></head>').replace(
            "</body>", f'<img src="{url}/x.png" alt=""></body>')
        assert render_pdf(html).startswith(b"%PDF-")
    finally:
        server.shutdown()
        server.server_close()
    assert requests == []
