"""EN 16931 e-invoices from an :class:`Invoice`: Factur-X CII (EN 16931 profile), UBL 2.1, Factur-X PDF.

Both XML syntaxes are built from one checked view of the invoice (:func:`_document`), so they always
carry the same numbers. Mapping decisions (EN 16931 business terms in brackets):

- Type code (BT-3): ``invoice`` 380, ``credit_note`` 381, ``debit_note`` 383.
- Credit notes: the model signs a credit note's cents from the invoice's point of view (a credit of
  the original is NEGATIVE). In CII and UBL the type code 381 already means "credit", so every amount
  of a credit note is written NEGATED (a full credit of an invoice shows the invoice's own positive
  figures). Invoices and debit notes are written with the model's signs.
- Item net price (BT-146) may not be negative (BR-27): the price is written as the absolute unit
  price and the quantity (BT-129) takes the sign of the written line amount (BT-131), so a feed-in
  compensation or tax reduction line has a negative quantity. With quantity 0 the price is the
  absolute line amount.
- Quantities and prices are rounded half-even to at most 6 decimals (they are informative: the line
  amount in cents is the figure that counts); amounts have exactly 2 decimals; never exponents.
- Item (BG-31): name = label (+ meter EAN), seller's id = component, attributes (BG-32) section,
  meter EAN and the SHA-256 of the line's settlement inputs, so a line can be traced.
- Billing period (BG-14): ``period_start`` to ``period_end - 1 day`` (the model's end is exclusive).
- VAT breakdown (BG-23): taken from ``invoice.vat`` but checked first: one entry per category and
  rate used by the lines, base = sum of those lines (BR-S-08/Z-08/E-08), VAT = base x rate rounded
  to the cent (BR-CO-17, half-even or half-up), rate > 0 for S (BR-S-05), 0 and no VAT for Z and E
  (BR-Z-05/06, BR-E-05/06), an exemption reason text for E (BR-E-10). A seller VAT id with an ISO
  country prefix is required (BR-S-02/Z-02/E-02, BR-CO-09). An inconsistent invoice raises
  :class:`EInvoiceError` instead of being "fixed", because the XML must say what the PDF says.
- Totals: no document allowances or charges, nothing prepaid: line total = tax basis (BR-CO-10/13),
  tax total = sum of the breakdown (BR-CO-14), grand total = basis + tax = amount due (BR-CO-15/16).
- Deliver-to location (BT-71): the connection EAN when the invoice covers exactly one connection.
- Payment means (BG-16): SEPA credit transfer (58) to the seller's IBAN for invoices and debit notes
  when the seller has one, otherwise "instrument not defined" (1); the payment reference is BT-83.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import ROUND_HALF_EVEN, ROUND_HALF_UP, Decimal
from io import BytesIO

import facturx
from lxml import etree
from pypdf import PdfReader

from kwartier.billing.model import UNIT_CODES, Address, Invoice
from kwartier.money import format_eur

# WeasyPrint's PDF/A output declares a trailer /Size that pypdf (inside factur-x) finds too small
# and reports on every invoice; the file is valid (it is checked after embedding), so that one
# message is dropped, nothing else.
logging.getLogger("pypdf._reader").addFilter(lambda record: "exceeds defined trailer size" not in record.getMessage())

GUIDELINE_ID = "urn:cen.eu:en16931:2017"
TYPE_CODES = {"invoice": "380", "credit_note": "381", "debit_note": "383"}
#: BT-120 text for VAT-exempt (category E) lines, by the buyer's language.
EXEMPTION_REASONS = {"nl": "Vrijgesteld van btw", "en": "Exempt from VAT"}

_RSM = "urn:un:unece:uncefact:data:standard:CrossIndustryInvoice:100"
_RAM = "urn:un:unece:uncefact:data:standard:ReusableAggregateBusinessInformationEntity:100"
_UDT = "urn:un:unece:uncefact:data:standard:UnqualifiedDataType:100"
_QDT = "urn:un:unece:uncefact:data:standard:QualifiedDataType:100"
_UBL_INVOICE = "urn:oasis:names:specification:ubl:schema:xsd:Invoice-2"
_UBL_CREDIT_NOTE = "urn:oasis:names:specification:ubl:schema:xsd:CreditNote-2"
_CAC = "urn:oasis:names:specification:ubl:schema:xsd:CommonAggregateComponents-2"
_CBC = "urn:oasis:names:specification:ubl:schema:xsd:CommonBasicComponents-2"
_SIX_PLACES = Decimal("0.000001")


class EInvoiceError(ValueError):
    """An invoice that cannot be written as a valid EN 16931 e-invoice (the message says why)."""


@dataclass(frozen=True)
class _Line:
    line_id: str
    name: str
    component: str
    attributes: tuple[tuple[str, str], ...]  # item attributes (BG-32): name, value
    quantity: str  # BT-129, sign chosen so that the price is >= 0
    unit_code: str  # BT-130
    price: str  # BT-146, >= 0
    amount: str  # BT-131, document sign
    category: str
    percent: str


@dataclass(frozen=True)
class _Vat:
    category: str
    percent: str
    base: str
    vat: str
    exemption_reason: str | None


@dataclass(frozen=True)
class _Document:
    inv: Invoice
    type_code: str
    period_last_day: date
    lines: tuple[_Line, ...]
    vat: tuple[_Vat, ...]
    line_total: str
    tax_total: str
    grand_total: str
    payment_code: str
    iban: str | None


def _plain(value: Decimal) -> str:
    """A quantity, price or percentage: half-even to 6 decimals, trailing zeros dropped, no exponent."""
    q = value.quantize(_SIX_PLACES, rounding=ROUND_HALF_EVEN)
    return "0" if q == 0 else format(q.normalize(), "f")


def _vat_ok(base_cents: int, rate: Decimal, vat_cents: int) -> bool:
    exact = Decimal(base_cents) * rate
    return vat_cents in {int(exact.to_integral_value(rounding=r)) for r in (ROUND_HALF_EVEN, ROUND_HALF_UP)}


def _check(inv: Invoice) -> None:
    """Raise :class:`EInvoiceError` for what EN 16931 forbids and the XSD does not catch."""
    where = f"invoice {inv.number}"
    if inv.kind not in TYPE_CODES:
        raise EInvoiceError(f"{where}: unknown kind {inv.kind!r} (expected {', '.join(TYPE_CODES)})")
    if not inv.lines:
        raise EInvoiceError(f"{where}: an invoice needs at least one line (BR-16)")
    if not inv.seller.name or not inv.buyer.name:
        raise EInvoiceError(f"{where}: the seller and the buyer need a name (BR-06, BR-07)")
    if not inv.seller.vat_id or not inv.seller.vat_id[:2].isalpha():
        raise EInvoiceError(f"{where}: seller VAT id {inv.seller.vat_id!r} must start with a country code "
                            "(BR-S-02, BR-CO-09)")
    if inv.period_end <= inv.period_start:
        raise EInvoiceError(f"{where}: period end {inv.period_end} is not after its start {inv.period_start}")
    ids = Counter(ln.line_id for ln in inv.lines)
    if dup := sorted(i for i, n in ids.items() if n > 1):
        raise EInvoiceError(f"{where}: line ids {dup} are not unique")
    bases: dict[tuple[str, Decimal], int] = {}
    for ln in inv.lines:
        if ln.unit not in UNIT_CODES:
            raise EInvoiceError(f"{where} line {ln.line_id}: unit {ln.unit!r} has no UN/ECE code "
                                f"(known: {', '.join(UNIT_CODES)})")
        if ln.vat_category not in ("S", "Z", "E"):
            raise EInvoiceError(f"{where} line {ln.line_id}: VAT category {ln.vat_category!r} is not S, Z or E")
        key = (ln.vat_category, ln.vat_rate)
        bases[key] = bases.get(key, 0) + ln.amount_cents
    given = Counter((v.category, v.rate) for v in inv.vat)
    if twice := [k for k, n in given.items() if n > 1]:
        raise EInvoiceError(f"{where}: VAT breakdown lists {twice} more than once")
    if set(given) != set(bases):
        raise EInvoiceError(f"{where}: VAT breakdown {sorted(given)} does not match the lines' categories "
                            f"and rates {sorted(bases)} (BR-CO-18, BR-S-08)")
    for v in inv.vat:
        what = f"{where}: VAT {v.category} {v.rate}"
        if not Decimal(0) <= v.rate < 1:
            raise EInvoiceError(f"{what}: the rate must be a fraction (0.21 for 21 %)")
        if v.category == "S" and v.rate == 0:
            raise EInvoiceError(f"{what}: standard rated VAT needs a rate above 0 (BR-S-05)")
        if v.category in ("Z", "E") and (v.rate != 0 or v.vat_cents != 0):
            raise EInvoiceError(f"{what}: category {v.category} has rate 0 and no VAT (BR-{v.category}-05/06)")
        if v.base_cents != bases[(v.category, v.rate)]:
            raise EInvoiceError(f"{what}: base {v.base_cents} cents is not the sum of its lines, "
                                f"{bases[(v.category, v.rate)]} cents (BR-{v.category}-08)")
        if not _vat_ok(v.base_cents, v.rate, v.vat_cents):
            raise EInvoiceError(f"{what}: {v.vat_cents} cents is not base x rate rounded to the cent (BR-CO-17)")


def _document(inv: Invoice) -> _Document:
    """The checked, signed, formatted content that both syntaxes write."""
    _check(inv)
    sign = -1 if inv.kind == "credit_note" else 1
    lines = []
    for ln in inv.lines:
        amount_cents = sign * ln.amount_cents
        if ln.quantity == 0:
            price = Decimal(abs(amount_cents)).scaleb(-2)
        else:
            price = abs(ln.unit_price if ln.unit_price is not None else Decimal(ln.amount_cents) / 100 / ln.quantity)
        quantity = -abs(ln.quantity) if amount_cents < 0 else abs(ln.quantity)
        meter = (("meter EAN", ln.meter),) if ln.meter else ()
        lines.append(_Line(ln.line_id, f"{ln.label} (EAN {ln.meter})" if ln.meter else ln.label, ln.component,
                           (("section", ln.section), *meter, ("inputs SHA-256", ln.inputs_hash)),
                           _plain(quantity), UNIT_CODES[ln.unit], _plain(price), format_eur(amount_cents),
                           ln.vat_category, _plain(ln.vat_rate * 100)))
    language = inv.buyer.locale[:2].lower()
    reason = EXEMPTION_REASONS.get(language, EXEMPTION_REASONS["en"])
    vat = tuple(_Vat(v.category, _plain(v.rate * 100), format_eur(sign * v.base_cents), format_eur(sign * v.vat_cents),
                     reason if v.category == "E" else None) for v in inv.vat)
    pays_seller = inv.kind != "credit_note" and bool(inv.seller.iban)
    return _Document(
        inv=inv, type_code=TYPE_CODES[inv.kind], period_last_day=inv.period_end - timedelta(days=1),
        lines=tuple(lines), vat=vat, line_total=format_eur(sign * inv.net_total_cents),
        tax_total=format_eur(sign * inv.vat_total_cents), grand_total=format_eur(sign * inv.total_cents),
        payment_code="58" if pays_seller else "1", iban=inv.seller.iban if pays_seller else None)


def _sub(parent: etree._Element, tag: str, text: str | None = None, **attrib: str) -> etree._Element:
    el = etree.SubElement(parent, tag, attrib)
    if text is not None:
        el.text = text
    return el


def _serialise(root: etree._Element) -> bytes:
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8", pretty_print=True)


# --- UN/CEFACT CII (Factur-X EN 16931) -------------------------------------------------------------

def _ram(name: str) -> str:
    return f"{{{_RAM}}}{name}"


def _cii_date(parent: etree._Element, tag: str, day: date) -> None:
    _sub(_sub(parent, _ram(tag)), f"{{{_UDT}}}DateTimeString", day.strftime("%Y%m%d"), format="102")


def _cii_address(party: etree._Element, address: Address) -> None:
    el = _sub(party, _ram("PostalTradeAddress"))
    for tag, value in (("PostcodeCode", address.postcode), ("LineOne", address.line1), ("CityName", address.city)):
        if value:
            _sub(el, _ram(tag), value)
    _sub(el, _ram("CountryID"), address.country)


def _cii_line(parent: etree._Element, ln: _Line) -> None:
    item = _sub(parent, _ram("IncludedSupplyChainTradeLineItem"))
    _sub(_sub(item, _ram("AssociatedDocumentLineDocument")), _ram("LineID"), ln.line_id)
    product = _sub(item, _ram("SpecifiedTradeProduct"))
    _sub(product, _ram("SellerAssignedID"), ln.component)
    _sub(product, _ram("Name"), ln.name)
    for name, value in ln.attributes:
        characteristic = _sub(product, _ram("ApplicableProductCharacteristic"))
        _sub(characteristic, _ram("Description"), name)
        _sub(characteristic, _ram("Value"), value)
    agreement = _sub(item, _ram("SpecifiedLineTradeAgreement"))
    _sub(_sub(agreement, _ram("NetPriceProductTradePrice")), _ram("ChargeAmount"), ln.price)
    _sub(_sub(item, _ram("SpecifiedLineTradeDelivery")), _ram("BilledQuantity"), ln.quantity, unitCode=ln.unit_code)
    settlement = _sub(item, _ram("SpecifiedLineTradeSettlement"))
    tax = _sub(settlement, _ram("ApplicableTradeTax"))
    _sub(tax, _ram("TypeCode"), "VAT")
    _sub(tax, _ram("CategoryCode"), ln.category)
    _sub(tax, _ram("RateApplicablePercent"), ln.percent)
    _sub(_sub(settlement, _ram("SpecifiedTradeSettlementLineMonetarySummation")), _ram("LineTotalAmount"), ln.amount)


def to_cii(invoice: Invoice) -> bytes:
    """The invoice as UN/CEFACT Cross Industry Invoice XML, Factur-X profile EN 16931 (UTF-8 bytes)."""
    doc = _document(invoice)
    inv = doc.inv
    root = etree.Element(f"{{{_RSM}}}CrossIndustryInvoice", nsmap={"rsm": _RSM, "ram": _RAM, "qdt": _QDT, "udt": _UDT})
    context = _sub(root, f"{{{_RSM}}}ExchangedDocumentContext")
    _sub(_sub(context, _ram("GuidelineSpecifiedDocumentContextParameter")), _ram("ID"), GUIDELINE_ID)
    header = _sub(root, f"{{{_RSM}}}ExchangedDocument")
    _sub(header, _ram("ID"), inv.number)
    _sub(header, _ram("TypeCode"), doc.type_code)
    _cii_date(header, "IssueDateTime", inv.issue_date)
    if inv.note:
        _sub(_sub(header, _ram("IncludedNote")), _ram("Content"), inv.note)
    transaction = _sub(root, f"{{{_RSM}}}SupplyChainTradeTransaction")
    for ln in doc.lines:
        _cii_line(transaction, ln)

    agreement = _sub(transaction, _ram("ApplicableHeaderTradeAgreement"))
    seller = _sub(agreement, _ram("SellerTradeParty"))
    _sub(seller, _ram("Name"), inv.seller.name)
    _cii_address(seller, inv.seller.address)
    _sub(_sub(seller, _ram("SpecifiedTaxRegistration")), _ram("ID"), inv.seller.vat_id, schemeID="VA")
    buyer = _sub(agreement, _ram("BuyerTradeParty"))
    _sub(buyer, _ram("ID"), inv.buyer.id)
    _sub(buyer, _ram("Name"), inv.buyer.name)
    _cii_address(buyer, inv.buyer.address)
    if inv.buyer.email:
        _sub(_sub(buyer, _ram("URIUniversalCommunication")), _ram("URIID"), inv.buyer.email, schemeID="EM")
    delivery = _sub(transaction, _ram("ApplicableHeaderTradeDelivery"))
    if len(inv.connections) == 1:  # BT-71: the connection's EAN is the point the energy is delivered to
        _sub(_sub(delivery, _ram("ShipToTradeParty")), _ram("ID"), inv.connections[0])

    settlement = _sub(transaction, _ram("ApplicableHeaderTradeSettlement"))
    if inv.payment_reference:
        _sub(settlement, _ram("PaymentReference"), inv.payment_reference)
    _sub(settlement, _ram("InvoiceCurrencyCode"), inv.currency)
    means = _sub(settlement, _ram("SpecifiedTradeSettlementPaymentMeans"))
    _sub(means, _ram("TypeCode"), doc.payment_code)
    if doc.iban:
        _sub(_sub(means, _ram("PayeePartyCreditorFinancialAccount")), _ram("IBANID"), doc.iban)
    for v in doc.vat:
        tax = _sub(settlement, _ram("ApplicableTradeTax"))
        _sub(tax, _ram("CalculatedAmount"), v.vat)
        _sub(tax, _ram("TypeCode"), "VAT")
        if v.exemption_reason:
            _sub(tax, _ram("ExemptionReason"), v.exemption_reason)
        _sub(tax, _ram("BasisAmount"), v.base)
        _sub(tax, _ram("CategoryCode"), v.category)
        _sub(tax, _ram("RateApplicablePercent"), v.percent)
    period = _sub(settlement, _ram("BillingSpecifiedPeriod"))
    _cii_date(period, "StartDateTime", inv.period_start)
    _cii_date(period, "EndDateTime", doc.period_last_day)
    _cii_date(_sub(settlement, _ram("SpecifiedTradePaymentTerms")), "DueDateDateTime", inv.due_date)
    totals = _sub(settlement, _ram("SpecifiedTradeSettlementHeaderMonetarySummation"))
    _sub(totals, _ram("LineTotalAmount"), doc.line_total)
    _sub(totals, _ram("TaxBasisTotalAmount"), doc.line_total)
    _sub(totals, _ram("TaxTotalAmount"), doc.tax_total, currencyID=inv.currency)
    _sub(totals, _ram("GrandTotalAmount"), doc.grand_total)
    _sub(totals, _ram("DuePayableAmount"), doc.grand_total)
    if inv.references:
        _sub(_sub(settlement, _ram("InvoiceReferencedDocument")), _ram("IssuerAssignedID"), inv.references)
    return _serialise(root)


# --- OASIS UBL 2.1 ---------------------------------------------------------------------------------

def _cbc(parent: etree._Element, name: str, text: str, **attrib: str) -> etree._Element:
    return _sub(parent, f"{{{_CBC}}}{name}", text, **attrib)


def _cac(parent: etree._Element, name: str) -> etree._Element:
    return _sub(parent, f"{{{_CAC}}}{name}")


def _ubl_party(parent: etree._Element, role: str, name: str, address: Address, *, vat_id: str | None = None,
               email: str | None = None, party_id: str | None = None) -> None:
    party = _cac(_cac(parent, role), "Party")
    if email:
        _cbc(party, "EndpointID", email, schemeID="EM")
    if party_id:
        _cbc(_cac(party, "PartyIdentification"), "ID", party_id)
    postal = _cac(party, "PostalAddress")
    for tag, value in (("StreetName", address.line1), ("CityName", address.city), ("PostalZone", address.postcode)):
        if value:
            _cbc(postal, tag, value)
    _cbc(_cac(postal, "Country"), "IdentificationCode", address.country)
    if vat_id:
        scheme = _cac(party, "PartyTaxScheme")
        _cbc(scheme, "CompanyID", vat_id)
        _cbc(_cac(scheme, "TaxScheme"), "ID", "VAT")
    _cbc(_cac(party, "PartyLegalEntity"), "RegistrationName", name)


def _ubl_tax_category(parent: etree._Element, name: str, category: str, percent: str,
                      exemption_reason: str | None = None) -> None:
    el = _cac(parent, name)
    _cbc(el, "ID", category)
    _cbc(el, "Percent", percent)
    if exemption_reason:
        _cbc(el, "TaxExemptionReason", exemption_reason)
    _cbc(_cac(el, "TaxScheme"), "ID", "VAT")


def to_ubl(invoice: Invoice) -> bytes:
    """The invoice as OASIS UBL 2.1 ``Invoice`` (``CreditNote`` for a credit note), EN 16931 (UTF-8 bytes)."""
    doc = _document(invoice)
    inv = doc.inv
    credit = inv.kind == "credit_note"
    cur = {"currencyID": inv.currency}
    root_ns = _UBL_CREDIT_NOTE if credit else _UBL_INVOICE
    root = etree.Element(f"{{{root_ns}}}{'CreditNote' if credit else 'Invoice'}",
                         nsmap={None: root_ns, "cac": _CAC, "cbc": _CBC})
    _cbc(root, "CustomizationID", GUIDELINE_ID)
    _cbc(root, "ID", inv.number)
    _cbc(root, "IssueDate", inv.issue_date.isoformat())
    if not credit:
        _cbc(root, "DueDate", inv.due_date.isoformat())
    _cbc(root, "CreditNoteTypeCode" if credit else "InvoiceTypeCode", doc.type_code)
    if inv.note:
        _cbc(root, "Note", inv.note)
    _cbc(root, "DocumentCurrencyCode", inv.currency)
    period = _cac(root, "InvoicePeriod")
    _cbc(period, "StartDate", inv.period_start.isoformat())
    _cbc(period, "EndDate", doc.period_last_day.isoformat())
    if inv.references:
        _cbc(_cac(_cac(root, "BillingReference"), "InvoiceDocumentReference"), "ID", inv.references)
    _ubl_party(root, "AccountingSupplierParty", inv.seller.name, inv.seller.address, vat_id=inv.seller.vat_id)
    _ubl_party(root, "AccountingCustomerParty", inv.buyer.name, inv.buyer.address,
               email=inv.buyer.email or None, party_id=inv.buyer.id)
    if len(inv.connections) == 1:
        _cbc(_cac(_cac(root, "Delivery"), "DeliveryLocation"), "ID", inv.connections[0])
    means = _cac(root, "PaymentMeans")
    _cbc(means, "PaymentMeansCode", doc.payment_code)
    if credit:
        _cbc(means, "PaymentDueDate", inv.due_date.isoformat())  # BT-9 of a UBL credit note
    if inv.payment_reference:
        _cbc(means, "PaymentID", inv.payment_reference)
    if doc.iban:
        _cbc(_cac(means, "PayeeFinancialAccount"), "ID", doc.iban)

    tax_total = _cac(root, "TaxTotal")
    _cbc(tax_total, "TaxAmount", doc.tax_total, **cur)
    for v in doc.vat:
        sub = _cac(tax_total, "TaxSubtotal")
        _cbc(sub, "TaxableAmount", v.base, **cur)
        _cbc(sub, "TaxAmount", v.vat, **cur)
        _ubl_tax_category(sub, "TaxCategory", v.category, v.percent, v.exemption_reason)
    totals = _cac(root, "LegalMonetaryTotal")
    _cbc(totals, "LineExtensionAmount", doc.line_total, **cur)
    _cbc(totals, "TaxExclusiveAmount", doc.line_total, **cur)
    _cbc(totals, "TaxInclusiveAmount", doc.grand_total, **cur)
    _cbc(totals, "PayableAmount", doc.grand_total, **cur)

    for ln in doc.lines:
        line = _cac(root, "CreditNoteLine" if credit else "InvoiceLine")
        _cbc(line, "ID", ln.line_id)
        _cbc(line, "CreditedQuantity" if credit else "InvoicedQuantity", ln.quantity, unitCode=ln.unit_code)
        _cbc(line, "LineExtensionAmount", ln.amount, **cur)
        item = _cac(line, "Item")
        _cbc(item, "Name", ln.name)
        _cbc(_cac(item, "SellersItemIdentification"), "ID", ln.component)
        _ubl_tax_category(item, "ClassifiedTaxCategory", ln.category, ln.percent)
        for name, value in ln.attributes:
            prop = _cac(item, "AdditionalItemProperty")
            _cbc(prop, "Name", name)
            _cbc(prop, "Value", value)
        _cbc(_cac(line, "Price"), "PriceAmount", ln.price, **cur)
    return _serialise(root)


# --- Factur-X PDF ----------------------------------------------------------------------------------

def facturx_pdf(pdf: bytes, invoice: Invoice) -> bytes:
    """A Factur-X (EN 16931) PDF/A-3: ``pdf`` with :func:`to_cii` embedded as ``factur-x.xml``.

    ``pdf`` must already be PDF/A (fonts embedded, an output intent), e.g. WeasyPrint's
    ``write_pdf(pdf_variant="pdf/a-3b")``: the factur-x package adds the attachment and the PDF/A-3
    XMP identification, nothing else. The XML is checked against the Factur-X XSD on the way.
    """
    if "/OutputIntents" not in PdfReader(BytesIO(pdf)).trailer["/Root"]:
        raise EInvoiceError(f"invoice {invoice.number}: the PDF has no output intent, so it cannot be PDF/A-3; "
                            "render it as PDF/A (WeasyPrint pdf_variant='pdf/a-3b')")
    kind = {"invoice": "Invoice", "credit_note": "Credit note", "debit_note": "Debit note"}[invoice.kind]
    metadata = {
        "author": invoice.seller.name,
        "keywords": f"{kind}, Factur-X",
        "title": f"{invoice.seller.name}: {kind} {invoice.number}",
        "subject": f"{kind} {invoice.number} dated {invoice.issue_date.isoformat()} issued by {invoice.seller.name}",
    }
    return facturx.generate_from_binary(
        pdf, to_cii(invoice), flavor="factur-x", level="en16931", check_xsd=True, pdf_metadata=metadata,
        lang=invoice.buyer.locale.replace("_", "-") or None)
