"""EN 16931 e-invoices: Factur-X CII against its XSD and the business rules, UBL 2.1, the Factur-X PDF."""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import date
from decimal import ROUND_HALF_EVEN, Decimal
from io import BytesIO

import facturx
import pytest
from lxml import etree
from pypdf import PdfReader

from kwartier.billing.einvoice import EInvoiceError, facturx_pdf, to_cii, to_ubl
from kwartier.billing.model import Address, Buyer, Invoice, InvoiceLine, Seller, VatBreakdown

D = Decimal
NS = {
    "rsm": "urn:un:unece:uncefact:data:standard:CrossIndustryInvoice:100",
    "ram": "urn:un:unece:uncefact:data:standard:ReusableAggregateBusinessInformationEntity:100",
    "udt": "urn:un:unece:uncefact:data:standard:UnqualifiedDataType:100",
    "cac": "urn:oasis:names:specification:ubl:schema:xsd:CommonAggregateComponents-2",
    "cbc": "urn:oasis:names:specification:ubl:schema:xsd:CommonBasicComponents-2",
    "inv": "urn:oasis:names:specification:ubl:schema:xsd:Invoice-2",
    "cn": "urn:oasis:names:specification:ubl:schema:xsd:CreditNote-2",
}
EAN = "871687140000012345"
SELLER = Seller("kwartier", "Kwartier Energie B.V.", "NL001234567B01",
                Address("NL", "Oudegracht 1", "Utrecht", "3511 AA"), "NL91ABNA0417164300")
BUYER = Buyer("C-1042", "J. de Vries", "j.devries@example.nl", "nl_NL",
              Address("NL", "Lindenlaan 7", "Amersfoort", "3818 AB"))


def _line(n: int, section: str, label: str, quantity: str, unit: str, cents: int, category: str = "S",
          meter: str | None = EAN) -> InvoiceLine:
    q = D(quantity)
    price = None if q == 0 else (D(cents) / 100 / q).quantize(D("0.000001"))
    rate = D("0.21") if category == "S" else D("0")
    return InvoiceLine(f"L{n}", section, f"{section}.{n}", label, meter, q, unit, price, cents, category, rate,
                       f"{n:064x}")


def _vat(lines: tuple[InvoiceLine, ...]) -> tuple[VatBreakdown, ...]:
    """The breakdown computed here, independently of the module: base per rate, VAT half-even."""
    out = []
    for category, rate in sorted({(ln.vat_category, ln.vat_rate) for ln in lines}):
        base = sum(ln.amount_cents for ln in lines if (ln.vat_category, ln.vat_rate) == (category, rate))
        out.append(VatBreakdown(category, rate, base, int((D(base) * rate).to_integral_value(ROUND_HALF_EVEN))))
    return tuple(out)


def household() -> Invoice:
    lines = (
        _line(1, "supplier", "Levering elektriciteit (dynamisch)", "312.456", "kWh", 3710),
        _line(2, "supplier", "Teruglevering elektriciteit", "145.210", "kWh", -812),
        _line(3, "supplier", "Vaste leveringskosten", "1", "month", 599, meter=None),
        _line(4, "supplier", "Correctie vorige periode", "0", "kWh", -125),
        _line(5, "grid", "Netbeheerkosten 3x25A", "31", "day", 1240),
        _line(6, "tax", "Energiebelasting", "167.246", "kWh", 1698),
        _line(7, "tax", "Vermindering energiebelasting", "31", "day", -4458, meter=None),
        _line(8, "community", "Ledenbijdrage energiecoöperatie", "1", "month", 250, category="E", meter=None),
    )
    return Invoice("KW-2025-000123", "invoice", date(2025, 2, 3), date(2025, 2, 17), "2025-01", date(2025, 1, 1),
                   date(2025, 2, 1), SELLER, BUYER, (EAN,), "nl-dynamic-2025", lines, _vat(lines), "KW2025000123",
                   note="Dynamisch kwartiertarief")


def credit_note() -> Invoice:
    """A full credit of :func:`household`: the model's credit note carries NEGATIVE cents."""
    original = household()
    lines = tuple(replace(ln, amount_cents=-ln.amount_cents,
                          unit_price=None if ln.unit_price is None else -ln.unit_price) for ln in original.lines)
    return replace(original, number="KW-2025-000187", kind="credit_note", issue_date=date(2025, 2, 20),
                   due_date=date(2025, 3, 6), lines=lines, vat=_vat(lines), payment_reference="KW2025000187",
                   references=original.number, note="Creditering van KW-2025-000123")


def debit_note() -> Invoice:
    lines = (_line(1, "grid", "Nacalculatie netbeheerkosten", "31", "day", 310),)
    return replace(household(), number="KW-2025-000188", kind="debit_note", issue_date=date(2025, 2, 21),
                   due_date=date(2025, 3, 7), lines=lines, vat=_vat(lines), payment_reference="KW2025000188",
                   references="KW-2025-000123", note="")


INVOICES = {"invoice": household, "credit_note": credit_note, "debit_note": debit_note}


def _cii(invoice: Invoice) -> etree._Element:
    return etree.fromstring(to_cii(invoice))


def _one(root: etree._Element, path: str) -> str:
    found = root.xpath(path, namespaces=NS)
    assert len(found) == 1, path
    return found[0].text


def _cii_totals(root: etree._Element) -> dict[str, D]:
    s = "//ram:SpecifiedTradeSettlementHeaderMonetarySummation/ram:"
    return {k: D(_one(root, s + k)) for k in ("LineTotalAmount", "TaxBasisTotalAmount", "TaxTotalAmount",
                                               "GrandTotalAmount", "DuePayableAmount")}


@pytest.mark.parametrize("kind", INVOICES)
def test_cii_is_valid_factur_x_en16931(kind):
    xml = to_cii(INVOICES[kind]())
    assert facturx.xml_check_xsd(xml, flavor="factur-x", level="en16931")
    root = etree.fromstring(xml)
    assert facturx.get_level(root) == "en16931"
    assert _one(root, "//ram:GuidelineSpecifiedDocumentContextParameter/ram:ID") == "urn:cen.eu:en16931:2017"
    assert _one(root, "/rsm:CrossIndustryInvoice/rsm:ExchangedDocument/ram:TypeCode") == {
        "invoice": "380", "credit_note": "381", "debit_note": "383"}[kind]


@pytest.mark.parametrize("kind", INVOICES)
def test_cii_totals_hold_the_business_rules(kind):
    invoice = INVOICES[kind]()
    root = _cii(invoice)
    totals = _cii_totals(root)
    items = root.xpath("//ram:IncludedSupplyChainTradeLineItem", namespaces=NS)
    assert len(items) == len(invoice.lines)
    amounts = [D(_one(it, ".//ram:LineTotalAmount")) for it in items]
    assert sum(amounts) == totals["LineTotalAmount"]  # BR-CO-10
    assert totals["TaxBasisTotalAmount"] == totals["LineTotalAmount"]  # BR-CO-13, no allowances or charges
    taxes = root.xpath("//ram:ApplicableHeaderTradeSettlement/ram:ApplicableTradeTax", namespaces=NS)
    assert sum(D(_one(t, "ram:CalculatedAmount")) for t in taxes) == totals["TaxTotalAmount"]  # BR-CO-14
    assert totals["TaxBasisTotalAmount"] + totals["TaxTotalAmount"] == totals["GrandTotalAmount"]  # BR-CO-15
    assert totals["DuePayableAmount"] == totals["GrandTotalAmount"]  # BR-CO-16, nothing prepaid
    for t in taxes:  # BR-S-08 / BR-E-08: base = the lines of that category and rate; BR-CO-17: VAT = base x rate
        category, percent = _one(t, "ram:CategoryCode"), D(_one(t, "ram:RateApplicablePercent"))
        lines = [a for a, it in zip(amounts, items, strict=True) if _one(it, ".//ram:CategoryCode") == category
                 and D(_one(it, ".//ram:RateApplicablePercent")) == percent]
        assert D(_one(t, "ram:BasisAmount")) == sum(lines)
        expected_vat = (sum(lines) * percent / 100).quantize(D("0.01"), ROUND_HALF_EVEN)
        assert D(_one(t, "ram:CalculatedAmount")) == expected_vat
        if category == "E":  # BR-E-10: an exemption reason
            assert _one(t, "ram:ExemptionReason") == "Vrijgesteld van btw"
    for it in items:  # BR-27: no negative net price; quantity x price gives the line amount
        price, qty = D(_one(it, ".//ram:ChargeAmount")), D(_one(it, ".//ram:BilledQuantity"))
        assert price >= 0
        if qty:
            assert abs(qty * price - D(_one(it, ".//ram:LineTotalAmount"))) < D("0.01")
    # The grand total is the test's own sum of the model's cents, signed positive for the 381 credit.
    sign = -1 if kind == "credit_note" else 1
    lines_cents = sum(ln.amount_cents for ln in invoice.lines)
    vat_cents = sum(v.vat_cents for v in _vat(invoice.lines))
    assert totals["GrandTotalAmount"] == D(sign * (lines_cents + vat_cents)) / 100


def test_household_figures_and_parties():
    root = _cii(household())
    totals = _cii_totals(root)
    # 37.10 - 8.12 + 5.99 - 1.25 + 12.40 + 16.98 - 44.58 = 18.52 at 21 % -> 3.8892 -> 3.89; plus 2.50 exempt.
    assert totals == {"LineTotalAmount": D("21.02"), "TaxBasisTotalAmount": D("21.02"), "TaxTotalAmount": D("3.89"),
                      "GrandTotalAmount": D("24.91"), "DuePayableAmount": D("24.91")}
    seller = "//ram:SellerTradeParty/"
    assert _one(root, seller + "ram:Name") == "Kwartier Energie B.V."
    vat_id = root.xpath(seller + "ram:SpecifiedTaxRegistration/ram:ID", namespaces=NS)[0]
    assert (vat_id.text, vat_id.get("schemeID")) == ("NL001234567B01", "VA")
    assert _one(root, seller + "ram:PostalTradeAddress/ram:CountryID") == "NL"
    email = root.xpath("//ram:BuyerTradeParty/ram:URIUniversalCommunication/ram:URIID", namespaces=NS)[0]
    assert (email.text, email.get("schemeID")) == ("j.devries@example.nl", "EM")
    assert _one(root, "//ram:BuyerTradeParty/ram:PostalTradeAddress/ram:CountryID") == "NL"
    period = "//ram:ApplicableHeaderTradeSettlement/ram:BillingSpecifiedPeriod/"
    assert _one(root, period + "ram:StartDateTime/udt:DateTimeString") == "20250101"
    assert _one(root, period + "ram:EndDateTime/udt:DateTimeString") == "20250131"  # inclusive last day
    assert _one(root, "//ram:SpecifiedTradePaymentTerms/ram:DueDateDateTime/udt:DateTimeString") == "20250217"
    assert _one(root, "//ram:ApplicableHeaderTradeSettlement/ram:PaymentReference") == "KW2025000123"
    assert _one(root, "//ram:SpecifiedTradeSettlementPaymentMeans/ram:TypeCode") == "58"
    assert _one(root, "//ram:PayeePartyCreditorFinancialAccount/ram:IBANID") == "NL91ABNA0417164300"
    assert root.xpath("//ram:InvoiceReferencedDocument", namespaces=NS) == []
    assert _one(root, "//ram:ApplicableHeaderTradeDelivery/ram:ShipToTradeParty/ram:ID") == EAN  # BT-71
    tax_total = root.xpath("//ram:TaxTotalAmount", namespaces=NS)[0]
    assert tax_total.get("currencyID") == "EUR"


def test_lines_carry_name_meter_unit_and_sign_rules():
    items = {_one(it, "ram:AssociatedDocumentLineDocument/ram:LineID"): it
             for it in _cii(household()).xpath("//ram:IncludedSupplyChainTradeLineItem", namespaces=NS)}

    def row(line_id):
        it = items[line_id]
        qty = it.xpath(".//ram:BilledQuantity", namespaces=NS)[0]
        return (_one(it, ".//ram:SpecifiedTradeProduct/ram:Name"), qty.text, qty.get("unitCode"),
                _one(it, ".//ram:ChargeAmount"), _one(it, ".//ram:LineTotalAmount"), _one(it, ".//ram:CategoryCode"),
                _one(it, ".//ram:RateApplicablePercent"))

    assert row("L1") == (f"Levering elektriciteit (dynamisch) (EAN {EAN})", "312.456", "KWH", "0.118737", "37.10",
                         "S", "21")
    # Feed-in: negative amount; the price stays positive (BR-27), the quantity carries the sign.
    assert row("L2") == (f"Teruglevering elektriciteit (EAN {EAN})", "-145.21", "KWH", "0.055919", "-8.12", "S", "21")
    assert row("L3") == ("Vaste leveringskosten", "1", "MON", "5.99", "5.99", "S", "21")
    # Quantity 0: the price is the (absolute) amount.
    assert row("L4")[1:5] == ("0", "KWH", "1.25", "-1.25")
    assert row("L5")[1:3] == ("31", "DAY")
    assert row("L7")[1:5] == ("-31", "DAY", "1.438065", "-44.58")
    assert row("L8")[4:] == ("2.50", "E", "0")
    characteristics = items["L1"].xpath(".//ram:ApplicableProductCharacteristic", namespaces=NS)
    assert [(_one(c, "ram:Description"), _one(c, "ram:Value")) for c in characteristics] == [
        ("section", "supplier"), ("meter EAN", EAN), ("inputs SHA-256", f"{1:064x}")]


def test_credit_note_is_381_with_the_original_positive_amounts():
    original, credit = _cii(household()), _cii(credit_note())
    assert _cii_totals(credit) == _cii_totals(original)
    assert _one(credit, "//ram:InvoiceReferencedDocument/ram:IssuerAssignedID") == "KW-2025-000123"
    path = "//ram:IncludedSupplyChainTradeLineItem//ram:"
    for field in ("LineTotalAmount", "BilledQuantity", "ChargeAmount"):
        assert [e.text for e in credit.xpath(path + field, namespaces=NS)] == [
            e.text for e in original.xpath(path + field, namespaces=NS)]
    # No seller IBAN to pay to: the money goes the other way.
    assert _one(credit, "//ram:SpecifiedTradeSettlementPaymentMeans/ram:TypeCode") == "1"
    assert credit.xpath("//ram:IBANID", namespaces=NS) == []


def test_debit_note_references_the_invoice():
    root = _cii(debit_note())
    assert _one(root, "//ram:InvoiceReferencedDocument/ram:IssuerAssignedID") == "KW-2025-000123"
    assert _cii_totals(root)["GrandTotalAmount"] == D("3.75")  # 3.10 + 21 % (0.651 -> 0.65)


@pytest.mark.parametrize("kind", INVOICES)
def test_output_is_byte_identical_for_the_same_invoice(kind):
    build = INVOICES[kind]
    assert to_cii(build()) == to_cii(build())
    assert to_ubl(build()) == to_ubl(build())
    invoice = build()
    assert to_cii(invoice) == to_cii(invoice) and to_ubl(invoice) == to_ubl(invoice)
    assert to_cii(invoice).startswith(b"<?xml version='1.0' encoding='UTF-8'?>\n")


@pytest.mark.parametrize("kind", INVOICES)
def test_numbers_are_plain_decimals(kind):
    invoice = INVOICES[kind]()
    odd = replace(invoice.lines[0], quantity=D("3.1E+1"), unit_price=D("1.19677419354838709677"))
    invoice = replace(invoice, lines=(odd, *invoice.lines[1:]))
    for xml, amount_tags in ((to_cii(invoice), r"Amount$"), (to_ubl(invoice), r"(?<!Price)Amount$")):
        for el in etree.fromstring(xml).iter():
            name = etree.QName(el).localname
            if re.search(r"Amount$|Quantity$|Percent$", name):
                assert re.fullmatch(r"-?\d+(\.\d{1,6})?", el.text), (name, el.text)
            if re.search(amount_tags, name) and name != "ChargeAmount":
                assert re.fullmatch(r"-?\d+\.\d\d", el.text), (name, el.text)
    quantities = etree.fromstring(to_cii(invoice)).xpath("//ram:BilledQuantity", namespaces=NS)
    assert quantities[0].text == "31"
    assert etree.fromstring(to_cii(invoice)).xpath("//ram:ChargeAmount", namespaces=NS)[0].text == "1.196774"


@pytest.mark.parametrize("kind", INVOICES)
def test_ubl_is_valid_and_carries_the_cii_totals(kind):
    invoice = INVOICES[kind]()
    xml = to_ubl(invoice)
    root = etree.fromstring(xml)
    credit = kind == "credit_note"
    doc_ns = NS["cn"] if credit else NS["inv"]
    assert root.tag == f"{{{doc_ns}}}{'CreditNote' if credit else 'Invoice'}"
    assert root.nsmap == {None: doc_ns, "cac": NS["cac"], "cbc": NS["cbc"]}
    # The official OASIS UBL 2.1 XSD, as shipped inside the factur-x package.
    assert facturx.xml_check_xsd(xml, flavor="ubl-2.1-creditnote" if credit else "ubl-2.1-invoice")
    assert _one(root, "cbc:CustomizationID") == "urn:cen.eu:en16931:2017"
    type_code = _one(root, "cbc:CreditNoteTypeCode" if credit else "cbc:InvoiceTypeCode")
    assert type_code == {"invoice": "380", "credit_note": "381", "debit_note": "383"}[kind]

    cii = _cii_totals(_cii(invoice))
    m = "cac:LegalMonetaryTotal/cbc:"
    assert D(_one(root, m + "LineExtensionAmount")) == cii["LineTotalAmount"]
    assert D(_one(root, m + "TaxExclusiveAmount")) == cii["TaxBasisTotalAmount"]
    assert D(_one(root, m + "TaxInclusiveAmount")) == cii["GrandTotalAmount"]
    assert D(_one(root, m + "PayableAmount")) == cii["DuePayableAmount"]
    assert D(_one(root, "cac:TaxTotal/cbc:TaxAmount")) == cii["TaxTotalAmount"]
    subtotals = root.xpath("cac:TaxTotal/cac:TaxSubtotal/cbc:TaxAmount", namespaces=NS)
    assert sum(D(e.text) for e in subtotals) == cii["TaxTotalAmount"]
    line_tag = "cac:CreditNoteLine" if credit else "cac:InvoiceLine"
    ubl_lines = [D(e.text) for e in root.xpath(f"{line_tag}/cbc:LineExtensionAmount", namespaces=NS)]
    cii_lines = [D(e.text) for e in _cii(invoice).xpath(
        "//ram:SpecifiedTradeSettlementLineMonetarySummation/ram:LineTotalAmount", namespaces=NS)]
    assert ubl_lines == cii_lines and sum(ubl_lines) == cii["LineTotalAmount"]
    # BT-9: a UBL credit note has no cbc:DueDate; its due date sits in PaymentMeans.
    due = "cac:PaymentMeans/cbc:PaymentDueDate" if credit else "cbc:DueDate"
    assert _one(root, due) == invoice.due_date.isoformat()
    assert _one(root, "cac:InvoicePeriod/cbc:EndDate") == "2025-01-31"
    refs = root.xpath("cac:BillingReference/cac:InvoiceDocumentReference/cbc:ID", namespaces=NS)
    assert [r.text for r in refs] == ([invoice.references] if invoice.references else [])
    assert _one(root, "cac:AccountingSupplierParty/cac:Party/cac:PartyTaxScheme/cbc:CompanyID") == "NL001234567B01"
    assert _one(root, "cac:Delivery/cac:DeliveryLocation/cbc:ID") == EAN
    endpoint = root.xpath("cac:AccountingCustomerParty/cac:Party/cbc:EndpointID", namespaces=NS)[0]
    assert (endpoint.text, endpoint.get("schemeID")) == ("j.devries@example.nl", "EM")


def test_ubl_exempt_subtotal_has_its_reason():
    root = etree.fromstring(to_ubl(household()))
    exempt = root.xpath("cac:TaxTotal/cac:TaxSubtotal[cac:TaxCategory/cbc:ID='E']", namespaces=NS)
    assert len(exempt) == 1
    assert _one(exempt[0], "cac:TaxCategory/cbc:TaxExemptionReason") == "Vrijgesteld van btw"
    assert _one(exempt[0], "cbc:TaxableAmount") == "2.50" and _one(exempt[0], "cbc:TaxAmount") == "0.00"


def _pdf_a3() -> bytes:
    import weasyprint

    return weasyprint.HTML(string="<h1>Factuur KW-2025-000123</h1><p>Totaal EUR 24,91</p>").write_pdf(
        pdf_variant="pdf/a-3b")


def test_facturx_pdf_embeds_the_cii():
    invoice = household()
    pdf = facturx_pdf(_pdf_a3(), invoice)
    filename, xml = facturx.get_xml_from_pdf(pdf, check_xsd=True)
    assert filename == "factur-x.xml"
    assert xml == to_cii(invoice)
    reader = PdfReader(BytesIO(pdf))
    catalog = reader.trailer["/Root"]
    assert "/OutputIntents" in catalog and "/AF" in catalog
    xmp = catalog["/Metadata"].get_object().get_data()
    assert b"<pdfaid:part>3</pdfaid:part>" in xmp
    assert b"EN 16931" in xmp


def test_facturx_pdf_refuses_a_pdf_that_is_not_pdf_a():
    import weasyprint

    plain = weasyprint.HTML(string="<p>x</p>").write_pdf()
    with pytest.raises(EInvoiceError, match=r"KW-2025-000123.*output intent"):
        facturx_pdf(plain, household())


def _with_lines(invoice: Invoice, change) -> Invoice:
    """The invoice with ``change`` applied to each line and a breakdown consistent with the new lines."""
    lines = tuple(change(ln) for ln in invoice.lines)
    return replace(invoice, lines=lines, vat=tuple(replace(v, vat_cents=0) for v in _vat(lines)))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda i: replace(i, vat=(replace(i.vat[1], base_cents=i.vat[1].base_cents + 1), i.vat[0])),
         r"base 1853 cents is not the sum of its lines, 1852 cents \(BR-S-08\)"),
        (lambda i: replace(i, vat=(i.vat[0], replace(i.vat[1], vat_cents=390))), r"390 cents .*BR-CO-17"),
        (lambda i: replace(i, vat=(replace(i.vat[0], vat_cents=53), i.vat[1])), r"VAT E 0: category E .*BR-E-05"),
        (lambda i: replace(i, vat=i.vat[1:]), r"does not match the lines"),
        (lambda i: replace(i, vat=(*i.vat, i.vat[0])), r"more than once"),
        (lambda i: replace(i, seller=replace(i.seller, vat_id=None)), r"seller VAT id None .*BR-S-02"),
        (lambda i: replace(i, lines=(replace(i.lines[0], unit="kW"), *i.lines[1:])), r"line L1: unit 'kW'"),
        (lambda i: replace(i, lines=(*i.lines, i.lines[0])), r"line ids \['L1'\] are not unique"),
        (lambda i: replace(i, lines=(), vat=()), r"at least one line \(BR-16\)"),
        (lambda i: replace(i, period_end=i.period_start), r"period end 2025-01-01 is not after"),
        (lambda i: replace(i, buyer=replace(i.buyer, name="")), r"need a name \(BR-06, BR-07\)"),
        (lambda i: _with_lines(i, lambda ln: replace(ln, vat_rate=D(21)) if ln.vat_category == "S" else ln),
         r"VAT S 21: the rate must be a fraction"),
        (lambda i: _with_lines(i, lambda ln: replace(ln, vat_rate=D(0)) if ln.vat_category == "S" else ln),
         r"VAT S 0: standard rated VAT needs a rate above 0 \(BR-S-05\)"),
    ],
    ids=["vat-base", "vat-amount", "exempt-with-vat", "missing-category", "double-category", "no-seller-vat",
         "unknown-unit", "duplicate-line", "no-lines", "empty-period", "no-buyer-name", "rate-as-percent",
         "standard-rate-zero"],
)
def test_invoices_that_break_en16931_are_refused(change, message):
    invoice = change(household())
    for render in (to_cii, to_ubl):
        with pytest.raises(EInvoiceError, match=f"invoice KW-2025-000123.*{message}"):
            render(invoice)


