"""An invoice as CSV (one row per line, then the usage rows and totals) or as a PDF.

The PDF is drawn with fpdf2 (the optional `pdf` extra, imported only here and only when a
PDF is asked for) in its built-in Helvetica, so text other than Latin-1 is replaced by "?".
Amounts are printed from the integer cents; kWh to three decimals (display rounding only).
"""

from __future__ import annotations

import csv
import io
from fractions import Fraction

from hashfarm.hosting.errors import HostingError
from hashfarm.hosting.invoice import Invoice, UsageRow
from hashfarm.hosting.money import fmt_cents, fmt_fraction
from hashfarm.hosting.period import fmt_day, fmt_time
from hashfarm.hosting.store import InvoiceRecord


def to_csv(rec: InvoiceRecord) -> str:
    """The invoice's lines, usage and totals as CSV text (sections told apart by `section`)."""
    inv = rec.invoice
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow(["section", "number", "customer", "period", "state", "currency"])
    w.writerow(["invoice", rec.number, inv.customer_id, str(inv.period), rec.state, inv.currency])
    w.writerow(["section", "kind", "machine", "description", "quantity", "unit", "unit_price",
                "amount", "sats"])  # fmt: skip
    for x in inv.lines:
        w.writerow(["line", x.kind, x.machine_id, x.description, fmt_fraction(x.quantity, 6),
                    x.unit, fmt_fraction(x.unit_price, 6), fmt_cents(x.cents), x.sats])  # fmt: skip
    w.writerow(["section", "machine", "contract", "method", "from", "to", "billed_kwh",
                "calculated_kwh", "metered_kwh", "variance_kwh", "running_h", "curtailed_h",
                "down_h", "uptime_pct"])  # fmt: skip
    for u in inv.usage:
        w.writerow(["usage", *_usage_cells(u)])
    w.writerow(["section", "total", "total_sats", "deposit_held"])
    w.writerow(["total", fmt_cents(inv.total_cents), inv.total_sats, fmt_cents(inv.deposit_cents)])
    return out.getvalue()


def _usage_cells(u: UsageRow) -> list[str]:
    var = u.variance_kwh
    pct = (
        "" if var is None or not u.calculated_kwh else fmt_fraction(var * 100 / u.calculated_kwh, 2)
    )
    return [
        u.machine_id, u.contract_id, u.method, fmt_time(u.start), fmt_time(u.end),
        fmt_fraction(u.billed_kwh), fmt_fraction(u.calculated_kwh),
        "" if u.metered_kwh is None else fmt_fraction(u.metered_kwh),
        "" if var is None else f"{fmt_fraction(var)} ({pct}%)" if pct else fmt_fraction(var),
        fmt_fraction(_hours(u.running_s), 2), fmt_fraction(_hours(u.curtailed_s), 2),
        fmt_fraction(_hours(u.down_s), 2),
        "" if u.uptime is None else fmt_fraction(u.uptime * 100, 2),
    ]  # fmt: skip


def _hours(seconds: int) -> Fraction:
    return Fraction(seconds, 3600)


def to_pdf(rec: InvoiceRecord, customer_name: str = "") -> bytes:
    """The invoice as a one-document PDF (needs the `pdf` extra)."""
    try:
        from fpdf import FPDF
    except ImportError:
        raise HostingError(
            "PDF export needs fpdf2, which is not installed: pip install 'hashfarm[pdf]'"
        ) from None
    inv = rec.invoice
    pdf = FPDF(orientation="L", unit="mm", format="A4")
    pdf.set_auto_page_break(auto=True, margin=12)
    pdf.add_page()
    pdf.set_font("Helvetica", "B", 14)
    title = "Credit note" if rec.kind == "credit_note" else "Invoice"
    pdf.cell(0, 8, _latin(f"{title} {rec.number}"), new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("Helvetica", size=9)
    for text in _header(rec, inv, customer_name):
        pdf.cell(0, 5, _latin(text), new_x="LMARGIN", new_y="NEXT")
    pdf.ln(3)
    _table(pdf, ["Kind", "Machine", "Description", "Quantity", "Unit", "Unit price", "Amount",
                 "Sats"], [22, 22, 95, 30, 14, 30, 30, 24], _line_rows(inv))  # fmt: skip
    pdf.ln(3)
    _table(pdf, ["Machine", "Method", "Billed kWh", "Calculated kWh", "Metered kWh",
                 "Variance kWh", "Running h", "Curtailed h", "Down h", "Uptime %"],
           [22, 26, 27, 28, 27, 38, 24, 24, 24, 24],
           [_pick(_usage_cells(u)) for u in inv.usage])  # fmt: skip
    pdf.ln(3)
    pdf.set_font("Helvetica", "B", 10)
    pdf.cell(0, 6, f"Total {inv.currency} {fmt_cents(inv.total_cents)}", new_x="LMARGIN",
             new_y="NEXT")  # fmt: skip
    if inv.total_sats:
        pdf.cell(0, 6, f"Revenue share {inv.total_sats:,} sats", new_x="LMARGIN", new_y="NEXT")
    return bytes(pdf.output())


def _header(rec: InvoiceRecord, inv: Invoice, name: str) -> list[str]:
    out = [f"Customer: {inv.customer_id}" + (f" ({name})" if name else ""),
           f"Period: {inv.period}   State: {rec.state}   Currency: {inv.currency}"]  # fmt: skip
    if rec.issued_at is not None:
        due = "" if rec.due_at is None else f"   Due: {fmt_day(rec.due_at)}"
        out.append(f"Issued: {fmt_day(rec.issued_at)}{due}")
    if rec.credits_number:
        out.append(f"Credits invoice {rec.credits_number}")
    if inv.deposit_cents:
        out.append(f"Deposit held: {inv.currency} {fmt_cents(inv.deposit_cents)}")
    return out


def _line_rows(inv: Invoice) -> list[list[str]]:
    return [
        [x.kind, x.machine_id, x.description, fmt_fraction(x.quantity, 3), x.unit,
         fmt_fraction(x.unit_price, 4), fmt_cents(x.cents), f"{x.sats:,}" if x.sats else ""]
        for x in inv.lines
    ]  # fmt: skip


def _table(pdf: object, head: list[str], widths: list[int], rows: list[list[str]]) -> None:
    from fpdf import FPDF

    assert isinstance(pdf, FPDF)
    pdf.set_font("Helvetica", "B", 8)
    for text, w in zip(head, widths, strict=True):
        pdf.cell(w, 5, text, border=1)
    pdf.ln()
    pdf.set_font("Helvetica", size=8)
    for row in rows:
        for text, w in zip(row, widths, strict=True):
            pdf.cell(w, 5, _latin(text), border=1)
        pdf.ln()


def _pick(cells: list[str]) -> list[str]:
    return [cells[0], cells[2], *cells[5:]]  # the PDF's table leaves contract and dates out


def _latin(text: str) -> str:
    return text.encode("latin-1", "replace").decode("latin-1")
