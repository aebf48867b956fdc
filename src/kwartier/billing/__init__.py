"""Billing: invoices from settled postings, numbering, credit notes, HTML/PDF and e-invoices."""
