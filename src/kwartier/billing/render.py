"""Render an invoice as the pilot's informative bill: HTML from one Jinja2 template, and PDF via WeasyPrint."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from importlib.resources import files
from typing import Any

import jinja2
from babel import Locale
from babel.dates import format_date
from babel.numbers import format_currency, format_decimal, format_percent
from markupsafe import Markup, escape

from kwartier.billing.model import Address, Informative, Invoice, InvoiceLine

#: The languages of the bill and the Babel locale that formats its amounts and dates.
BABEL_LOCALES = {"nl": "nl_NL", "en": "en_GB", "fr": "fr_FR"}
#: Specification sections in the order of the bill: who the money is for.
SECTION_ORDER = ("supplier", "grid", "tax", "community", "aggregator")

_LANG_INDEX = {"nl": 0, "en": 1, "fr": 2}
#: Every label of the bill as (Dutch, English, French); ``{name}`` fields are filled in by :func:`_Fmt.text`.
_TEXT: dict[str, tuple[str, str, str]] = {
    "invoice": ("Factuur", "Invoice", "Facture"),
    "credit_note": ("Creditnota", "Credit note", "Avoir"),
    "debit_note": ("Debetnota", "Debit note", "Note de débit"),
    "corrects": ("Corrigeert factuur {ref}", "Corrects invoice {ref}", "Rectifie la facture {ref}"),
    "supplier": ("Levering", "Supply", "Fourniture"),
    "grid": ("Netbeheer", "Grid operator", "Gestionnaire de réseau"),
    "tax": ("Belastingen", "Taxes", "Taxes"),
    "community": ("Energiegemeenschap", "Energy community", "Communauté d'énergie"),
    "aggregator": ("Aggregator", "Aggregator", "Agrégateur"),
    "issue_date": ("Datum", "Issue date", "Date d'émission"),
    "period": ("Periode", "Period", "Période"),
    "period_value": ("{start} t/m {end}", "{start} to {end}", "du {start} au {end}"),
    "customer_number": ("Klantnummer", "Customer number", "Numéro de client"),
    "connections": ("Aansluiting (EAN)", "Connection (EAN)", "Raccordement (EAN)"),
    "product": ("Product", "Plan", "Offre"),
    "due_pay": ("Uiterlijk betalen op", "Please pay by", "À payer au plus tard le"),
    "due_receive": ("Uiterlijk ontvangen op", "You receive it by", "Versé au plus tard le"),
    "payment_ref": ("Betalingskenmerk", "Payment reference", "Référence de paiement"),
    "vat_id": ("Btw-nummer", "VAT number", "N° TVA"),
    "to_pay": ("Te betalen", "Amount due", "Montant à payer"),
    "to_receive": ("Je ontvangt", "You receive", "Vous recevez"),
    "pay_iban": ("Maak dit bedrag uiterlijk {due} over naar {iban} t.n.v. {seller}, onder vermelding van {ref}.",
                 "Please transfer this amount to {iban} ({seller}) by {due}, quoting {ref}.",
                 "Merci de virer ce montant sur le compte {iban} ({seller}) au plus tard le {due}, "
                 "avec la référence {ref}."),
    "pay_plain": ("Betaal dit bedrag uiterlijk {due}, onder vermelding van {ref}.",
                  "Please pay this amount by {due}, quoting {ref}.",
                  "Merci de payer ce montant au plus tard le {due}, avec la référence {ref}."),
    "refund": ("Wij maken dit bedrag uiterlijk {due} aan je over.", "We will pay this amount to you by {due}.",
               "Nous vous versons ce montant au plus tard le {due}."),
    "net_total": ("Totaal excl. btw", "Total excl. VAT", "Total HT"),
    "vat_row": ("Btw {rate} over {base}", "VAT {rate} on {base}", "TVA {rate} sur {base}"),
    "exempt": ("vrijgesteld", "exempt", "exonéré"),
    "total": ("Totaal incl. btw", "Total incl. VAT", "Total TTC"),
    "summary": ("Overzicht", "Summary", "Récapitulatif"),
    "where_money": ("Waar gaat je geld naartoe?", "Where does your money go?", "Où va votre argent\u00a0?"),
    "excl_vat": ("excl. btw", "excl. VAT", "HT"),
    "specification": ("Specificatie", "Specification", "Détail de la facture"),
    "spec_note": ("Alle bedragen in de specificatie zijn exclusief btw. De prijs per eenheid is het gemiddelde "
                  "over de periode.",
                  "All amounts in the specification exclude VAT. The price per unit is the average over the "
                  "period.",
                  "Tous les montants du détail sont hors TVA. Le prix unitaire est la moyenne sur la période."),
    "col_description": ("Omschrijving", "Description", "Description"),
    "col_quantity": ("Hoeveelheid", "Quantity", "Quantité"),
    "col_price": ("Gem. prijs", "Avg. price", "Prix moyen"),
    "col_amount": ("Bedrag", "Amount", "Montant"),
    "col_vat": ("Btw", "VAT", "TVA"),
    "subtotal": ("Subtotaal", "Subtotal", "Sous-total"),
    "meter": ("meter", "meter", "compteur"),
    "per": ("per", "per", "par"),
    "glance": ("In het kort", "In short", "En bref"),
    "informative": ("Inzicht in je energie", "Your energy at a glance", "Votre énergie en un coup d'œil"),
    "informative_note": ("Dit deel is informatief: wat je betaalt staat op de eerste pagina.",
                         "This part is for information: what you pay is on the first page.",
                         "Cette partie est informative\u00a0: le montant à payer figure en première page."),
    "imported": ("Van het net gehaald", "Taken from the grid", "Prélevé sur le réseau"),
    "exported": ("Teruggeleverd", "Fed into the grid", "Injecté sur le réseau"),
    "avg_paid": ("Je betaalde gemiddeld", "You paid on average", "Vous avez payé en moyenne"),
    "per_kwh_all_in": ("per kWh, alles inbegrepen", "per kWh, all in", "par kWh, tout compris"),
    "per_kwh": ("per kWh", "per kWh", "par kWh"),
    "community_avg": ("Gemiddelde in je energiegemeenschap", "Average in your energy community",
                      "Moyenne de votre communauté d'énergie"),
    "percentile": ("Je betaalde per kWh minder dan {pct} van de leden.",
                   "You paid less per kWh than {pct} of the members.",
                   "Vous avez payé moins par kWh que {pct} des membres."),
    "reference": ("Zelfde verbruik met {plan}", "The same use on {plan}", "Même consommation avec {plan}"),
    "no_netting": ("Zonder salderen (regels vanaf 2027)", "Without net metering (rules from 2027)",
                   "Sans compensation (règles à partir de 2027)"),
    "diff_more": ("{diff} meer dan deze factuur", "{diff} more than this invoice", "{diff} de plus que cette facture"),
    "diff_less": ("{diff} minder dan deze factuur", "{diff} less than this invoice",
                  "{diff} de moins que cette facture"),
    "diff_same": ("evenveel als deze factuur", "the same as this invoice", "autant que cette facture"),
    "compare_note": ("Bedragen incl. btw, voor dezelfde periode en hetzelfde verbruik.",
                     "Amounts incl. VAT, for the same period and the same use.",
                     "Montants TTC, pour la même période et la même consommation."),
    "daily": ("Kosten per dag", "Cost per day", "Coût par jour"),
    "daily_note": ("Balken onder de lijn: dagen waarop je meer terugkreeg dan je betaalde.",
                   "Bars below the line: days on which you got back more than you paid.",
                   "Barres sous la ligne\u00a0: jours où vous avez reçu plus que vous n'avez payé."),
    "trace": ("Herleidbaarheid", "Traceability", "Traçabilité"),
    "trace_note": ("Elke regel is te herleiden tot de meterstanden, prijzen en het tarief waaruit hij is "
                   "berekend (SHA-256, eerste 12 tekens).",
                   "Each line can be traced to the readings, prices and plan it was computed from (SHA-256, "
                   "first 12 characters).",
                   "Chaque ligne peut être rattachée aux relevés, aux prix et au tarif dont elle est issue "
                   "(SHA-256, 12 premiers caractères)."),
    "col_line": ("Regel", "Line", "Ligne"),
    "col_hash": ("Invoer-hash", "Inputs hash", "Empreinte des données"),
}
#: Units as (singular, plural) per language; unknown units are shown as they are.
_UNITS: dict[str, tuple[tuple[str, str], tuple[str, str], tuple[str, str]]] = {
    "kWh": (("kWh", "kWh"), ("kWh", "kWh"), ("kWh", "kWh")),
    "day": (("dag", "dagen"), ("day", "days"), ("jour", "jours")),
    "month": (("maand", "maanden"), ("month", "months"), ("mois", "mois")),
    "year": (("jaar", "jaar"), ("year", "years"), ("an", "ans")),
}
#: Digits after the decimal point of an average unit price: five for per-kWh prices (as Dutch bills do).
_PRICE_DIGITS = {"kWh": 5}
#: Digits of the per-kWh prices in the informative part: a household compares cents, not micro-euros.
_INFO_PRICE_DIGITS = 2


def language_of(locale: str) -> str:
    """``nl``, ``en`` or ``fr`` from a locale such as ``"nl"``, ``"fr_FR"`` or ``"en-GB"``."""
    lang = locale.replace("-", "_").split("_")[0].lower()
    if lang not in _LANG_INDEX:
        raise ValueError(f"locale {locale!r}: the bill is available in nl, en and fr")
    return lang


@dataclass(frozen=True)
class _Fmt:
    """Texts, amounts, prices, quantities and dates in one language."""

    lang: str

    @property
    def babel(self) -> str:
        return BABEL_LOCALES[self.lang]

    def text(self, key: str, **fields: object) -> str:
        template = _TEXT[key][_LANG_INDEX[self.lang]]
        return template.format(**fields) if fields else template

    def money(self, cents: int) -> str:
        return format_currency(Decimal(cents).scaleb(-2), "EUR", locale=self.babel)

    def price(self, eur: Decimal, unit: str, digits: int | None = None) -> str:
        """A price per unit in EUR, with a fixed number of decimals (by default per unit)."""
        digits = _PRICE_DIGITS.get(unit, 2) if digits is None else digits
        pattern = Locale.parse(self.babel).currency_formats["standard"].pattern.replace("0.00", "0." + "0" * digits)
        return format_currency(eur, "EUR", format=pattern, locale=self.babel, currency_digits=False)

    def unit(self, unit: str, quantity: Decimal) -> str:
        names = _UNITS.get(unit)
        if names is None:
            return unit
        singular, plural = names[_LANG_INDEX[self.lang]]
        q = abs(quantity)
        if q == q.to_integral_value():  # "1.0000 month" is shown as 1: singular
            q = int(q)
        return singular if Locale.parse(self.babel).plural_form(q) == "one" else plural

    def quantity(self, quantity: Decimal, unit: str) -> str:
        return f"{format_decimal(quantity, locale=self.babel)}\u00a0{self.unit(unit, quantity)}"

    def day(self, d: date) -> str:
        return format_date(d, "long", locale=self.babel)

    def percent(self, fraction: Decimal) -> str:
        return format_percent(fraction, locale=self.babel, decimal_quantization=False)


def render_html(invoice: Invoice, informative: Informative | None, locale: str | None = None) -> str:
    """The bill as one self-contained HTML page (CSS inlined, chart as inline SVG) in nl, en or fr.

    ``locale`` defaults to the buyer's; amounts and dates are formatted for nl_NL, en_GB or fr_FR.
    """
    fmt = _Fmt(language_of(locale or invoice.buyer.locale))
    css = files("kwartier.billing").joinpath("templates", "invoice.css").read_text(encoding="utf-8")
    template = _environment().get_template("invoice.html.j2")
    return template.render(
        lang=fmt.lang,
        css=Markup(css),
        t={key: fmt.text(key) for key, texts in _TEXT.items() if "{" not in texts[0]},
        inv=invoice,
        front=_front_page(invoice, fmt),
        sections=_sections(invoice.lines, fmt),
        show_line_vat=len({(ln.vat_category, ln.vat_rate) for ln in invoice.lines}) > 1,
        totals=_totals(invoice, fmt),
        info=_informative(invoice, informative, fmt) if informative is not None else None,
        trace=[{"line_id": ln.line_id, "label": ln.label, "meter": ln.meter, "hash": ln.inputs_hash[:12]}
               for ln in invoice.lines],
    )


def render_pdf(html: str) -> bytes:
    """The PDF of :func:`render_html`'s page: WeasyPrint, no base URL, every external fetch refused."""
    import weasyprint  # slow to import; only the PDF path needs it

    no_network = weasyprint.URLFetcher(allowed_protocols=())
    # PDF/A-3b: the archival form a Factur-X invoice must be (the XML is attached to it).
    return weasyprint.HTML(string=html, base_url=None, url_fetcher=no_network).write_pdf(pdf_variant="pdf/a-3b")


def _environment() -> jinja2.Environment:
    return jinja2.Environment(loader=jinja2.PackageLoader("kwartier.billing", "templates"), autoescape=True,
                              trim_blocks=True, lstrip_blocks=True, undefined=jinja2.StrictUndefined)


def _front_page(invoice: Invoice, fmt: _Fmt) -> dict[str, Any]:
    last_day = invoice.period_end - timedelta(days=1)
    total = invoice.total_cents
    due = fmt.day(invoice.due_date)
    if total < 0:
        instruction = fmt.text("refund", due=due)
    elif invoice.seller.iban:
        instruction = fmt.text("pay_iban", due=due, iban=invoice.seller.iban, seller=invoice.seller.name,
                               ref=invoice.payment_reference)
    else:
        instruction = fmt.text("pay_plain", due=due, ref=invoice.payment_reference)
    return {
        "title": fmt.text(invoice.kind),
        "corrects": fmt.text("corrects", ref=invoice.references) if invoice.references else None,
        "issue_date": fmt.day(invoice.issue_date),
        "due_date": due,
        "period": fmt.text("period_value", start=fmt.day(invoice.period_start), end=fmt.day(last_day)),
        "period_days": fmt.quantity(Decimal((invoice.period_end - invoice.period_start).days), "day"),
        "amount_label": fmt.text("to_receive" if total < 0 else "to_pay"),
        "due_label": fmt.text("due_receive" if total < 0 else "due_pay"),
        "summary_heading": fmt.text("where_money" if invoice.kind == "invoice" else "summary"),
        "amount": fmt.money(abs(total)),
        "instruction": instruction,
        "seller_address": _address_lines(invoice.seller.address),
        "buyer_address": _address_lines(invoice.buyer.address),
    }


def _address_lines(address: Address) -> list[str]:
    city = " ".join(part for part in (address.postcode, address.city) if part)
    return [line for line in (address.line1, city) if line]


def _sections(lines: Sequence[InvoiceLine], fmt: _Fmt) -> list[dict[str, Any]]:
    """Lines grouped by section in the bill's order; a section the bill does not know comes last, by name."""
    order = list(SECTION_ORDER) + sorted({ln.section for ln in lines} - set(SECTION_ORDER))
    out = []
    for key in order:
        members = [ln for ln in lines if ln.section == key]
        if not members:
            continue
        out.append({
            "key": key,
            "heading": fmt.text(key) if key in SECTION_ORDER else key.capitalize(),
            "subtotal": fmt.money(sum(ln.amount_cents for ln in members)),
            "lines": [_line(ln, fmt) for ln in members],
        })
    return out


def _line(line: InvoiceLine, fmt: _Fmt) -> dict[str, Any]:
    unit_price = None
    if line.unit_price is not None:
        unit_price = f"{fmt.price(line.unit_price, line.unit)} {fmt.text('per')} {fmt.unit(line.unit, Decimal(1))}"
    return {
        "label": line.label,
        "meter": line.meter,
        "quantity": fmt.quantity(line.quantity, line.unit),
        "unit_price": unit_price,
        "amount": fmt.money(line.amount_cents),
        "negative": line.amount_cents < 0,
        "vat": _vat_rate(line.vat_category, line.vat_rate, fmt),
    }


def _vat_rate(category: str, rate: Decimal, fmt: _Fmt) -> str:
    """A VAT rate given as a fraction (0.21, as in the plans and :func:`kwartier.money.vat_cents`) as a percentage."""
    return fmt.text("exempt") if category == "E" else fmt.percent(rate)


def _totals(invoice: Invoice, fmt: _Fmt) -> dict[str, Any]:
    return {
        "net": fmt.money(invoice.net_total_cents),
        "vat": [{"label": fmt.text("vat_row", rate=_vat_rate(v.category, v.rate, fmt), base=fmt.money(v.base_cents)),
                 "amount": fmt.money(v.vat_cents)} for v in invoice.vat],
        "total": fmt.money(invoice.total_cents),
    }


def _comparison(label: str, other_cents: int | None, actual_cents: int, fmt: _Fmt) -> dict[str, str] | None:
    """What the same period would have cost another way, and the difference with what it costs now."""
    if other_cents is None:
        return None
    diff = other_cents - actual_cents
    key = "diff_more" if diff > 0 else "diff_less" if diff < 0 else "diff_same"
    return {"label": label, "amount": fmt.money(other_cents), "difference": fmt.text(key, diff=fmt.money(abs(diff))),
            "cheaper_now": "yes" if diff > 0 else "no" if diff < 0 else "same"}


def _informative(invoice: Invoice, info: Informative, fmt: _Fmt) -> dict[str, Any]:
    def per_kwh(eur: Decimal | None) -> str | None:
        return None if eur is None else fmt.price(eur, "kWh", _INFO_PRICE_DIGITS)

    return {
        "imported": fmt.quantity(info.import_kwh, "kWh"),
        "exported": fmt.quantity(info.export_kwh, "kWh"),
        "average": per_kwh(info.average_eur_per_kwh),
        "community_average": per_kwh(info.community_average_eur_per_kwh),
        "percentile": None if info.percentile is None
        else fmt.text("percentile", pct=fmt.percent(Decimal(info.percentile).scaleb(-2))),
        "comparisons": [c for c in (
            _comparison(fmt.text("reference", plan=info.reference_plan or "?"), info.reference_total_cents,
                        invoice.total_cents, fmt),
            _comparison(fmt.text("no_netting"), info.no_netting_total_cents, invoice.total_cents, fmt),
        ) if c is not None],
        "chart": daily_cost_svg(info.daily_cost_cents, fmt.lang) if info.daily_cost_cents else None,
    }


# The chart's look as SVG presentation attributes: WeasyPrint does not apply the page's CSS inside inline SVG.
_COST, _EARN = "#3b6ea5", "#4f9d69"
_GRID = 'stroke="#d5dbe3" stroke-width="0.6" stroke-dasharray="3 3"'
_AXIS = 'stroke="#4a5361" stroke-width="0.9"'
_YLABEL = 'font-size="9" fill="#4a5361" text-anchor="end"'
_XLABEL = 'font-size="8" fill="#6b7480" text-anchor="middle"'


def daily_cost_svg(daily_cost_cents: Sequence[tuple[date, int]], lang: str = "en") -> Markup:
    """A bar chart of the cost of each local day (cents) as inline SVG: one ``rect.bar`` per day, costs
    above the axis and days that earned money below it; the y axis names the highest and lowest day."""
    fmt = _Fmt(language_of(lang))
    width, height = 640.0, 190.0
    left, right, top, bottom = 62.0, 8.0, 10.0, 22.0
    plot_w, plot_h = width - left - right, height - top - bottom
    values = [cents for _, cents in daily_cost_cents]
    high, low = max([*values, 0]), min([*values, 0])
    span = (high - low) or 1
    zero_y = top + plot_h * high / span
    step = plot_w / len(values)
    bar_w = max(step * 0.72, 1.0)
    parts = [f'<svg class="daily-chart" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width:g} {height:g}" '
             f'role="img" aria-label="{escape(fmt.text("daily"))}">']
    for value, label in ((high, fmt.money(high)), (low, fmt.money(low))):
        if value != 0:
            y = top + plot_h * (high - value) / span
            parts.append(f'<line x1="{left:g}" y1="{y:.1f}" x2="{width - right:g}" y2="{y:.1f}" {_GRID}/>')
            parts.append(f'<text x="{left - 6:g}" y="{y + 3:.1f}" {_YLABEL}>{escape(label)}</text>')
    label_every = 1 if len(values) <= 31 else 7
    for i, (day, cents) in enumerate(daily_cost_cents):
        x = left + i * step + (step - bar_w) / 2
        h = plot_h * abs(cents) / span
        y = zero_y if cents < 0 else zero_y - h
        kind, colour = ("bar neg", _EARN) if cents < 0 else ("bar", _COST)
        parts.append(f'<rect class="{kind}" fill="{colour}" x="{x:.1f}" y="{y:.1f}" width="{bar_w:.1f}" '
                     f'height="{h:.1f}"><title>{escape(fmt.day(day))}: {escape(fmt.money(cents))}</title></rect>')
        if i % label_every == 0:
            parts.append(f'<text x="{x + bar_w / 2:.1f}" y="{height - 8:g}" {_XLABEL}>{day.day}</text>')
    parts.append(f'<line x1="{left:g}" y1="{zero_y:.1f}" x2="{width - right:g}" y2="{zero_y:.1f}" {_AXIS}/>')
    parts.append(f'<text x="{left - 6:g}" y="{zero_y + 3:.1f}" {_YLABEL}>{escape(fmt.money(0))}</text>')
    parts.append("</svg>")
    return Markup("".join(parts))
