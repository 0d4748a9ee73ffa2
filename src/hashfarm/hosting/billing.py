"""The bill run and the invoice lifecycle, over a `HostingStore`.

`run_period` measures every assigned machine's month and writes one Draft invoice per
customer, all in one transaction. It is idempotent: the same inputs give byte-identical
documents, and an unchanged draft is not rewritten. A customer whose invoice for the period
is closed (Issued, Overdue or Paid) is never recomputed: the run reports it as closed and
leaves it alone; `reissue` is the explicit way to change it (a credit note for the whole
closed invoice, then a new Draft revision on the next run).

A customer whose inputs are incomplete (a metered machine without readings around the
period, a BTC-indexed day without a price) gets an error in the report and keeps its previous
draft, if any; the other customers are billed.
"""

from __future__ import annotations

from bisect import bisect_right
from collections import defaultdict
from dataclasses import dataclass, field, replace
from fractions import Fraction

from hashfarm.hosting.contracts import Method
from hashfarm.hosting.errors import HostingError, InputError, StateError
from hashfarm.hosting.inputs import MeterReading, interpolate, register_problems
from hashfarm.hosting.invoice import (
    CLOSED,
    Charge,
    InvoiceState,
    MachineMonth,
    build_invoice,
    check_transition,
)
from hashfarm.hosting.period import SECONDS_PER_DAY, Period
from hashfarm.hosting.power import NO_USAGE, Integrator, PowerSource, Usage
from hashfarm.hosting.sources import BtcPrices, Curtailment, MinedSats
from hashfarm.hosting.store import Assignment, HostingStore, InvoiceRecord

DEFAULT_MAX_HOLD_S = 3600  # a power sample speaks for at most an hour (no data after that)
METER_LOOKAROUND_S = 31 * SECONDS_PER_DAY  # readings this far outside a period bracket it
_FOREVER = 2**62


@dataclass
class RunReport:
    """What one bill run did, per customer."""

    period: str
    written: list[str] = field(default_factory=list)  # new or changed drafts
    unchanged: list[str] = field(default_factory=list)
    closed: list[str] = field(default_factory=list)  # not recomputed
    errors: dict[str, str] = field(default_factory=dict)


def invoice_number(customer_id: str, period: Period | str, revision: int, kind: str) -> str:
    """`INV-2026-11-acme-1` or `CN-2026-11-acme-1` (the revision it credits)."""
    prefix = "INV" if kind == "invoice" else "CN"
    return f"{prefix}-{period}-{customer_id}-{revision}"


def measure(
    store: HostingStore,
    period: Period,
    power: PowerSource,
    *,
    mined: MinedSats | None = None,
    prices: BtcPrices | None = None,
    curtailment: Curtailment | None = None,
    max_hold_s: int = DEFAULT_MAX_HOLD_S,
) -> dict[str, list[MachineMonth]]:
    """Every customer's machine-months for `period` (one per assignment interval).

    Each machine's samples are integrated once, between every assignment boundary, UTC
    midnight and curtailment edge inside its windows; a window's usage is the sum of its
    pieces, so the pieces of a machine's month add up to its month exactly. Inside a
    curtailment window the farm switched the machine off on purpose: its down seconds there
    count as curtailed (running seconds stay running).
    """
    machines = store.machines()
    contracts = {c.id: c for c in store.contracts()}
    by_machine: dict[str, list[Assignment]] = defaultdict(list)
    for a in store.overlapping(period.start, period.end):
        by_machine[a.machine_id].append(a)
    readings = store.readings(period.start - METER_LOOKAROUND_S, period.end + METER_LOOKAROUND_S)
    out: dict[str, list[MachineMonth]] = defaultdict(list)
    for mid, assigned in sorted(by_machine.items()):
        windows = [_clip(a, period) for a in assigned]
        off = _merged(curtailment.windows(mid, period.start, period.end)) if curtailment else []
        edges = {min(max(e, period.start), period.end) for w in off for e in w}
        bounds = sorted({b for w in windows for b in w} | _midnights(windows) | edges)
        integ = Integrator(power.samples(mid, period.start, period.end), max_hold_s)
        pieces = [
            (b, _curtailed(u) if _inside(off, b) else u)
            for b, u in zip(bounds, integ.windows(bounds), strict=False)
        ]
        for a, (lo, hi) in zip(assigned, windows, strict=True):
            terms = contracts[a.contract_id].terms
            mine = [(b - b % SECONDS_PER_DAY, u) for b, u in pieces if lo <= b < hi]
            indexed = terms.method is Method.BTC_INDEXED
            shared = terms.method is Method.REVENUE_SHARE
            out[a.customer_id].append(
                MachineMonth(
                    machines[mid], a.contract_id, terms, lo, hi,
                    sum((u for _, u in mine), NO_USAGE),
                    _metered(readings.get(mid, []), lo, hi),
                    tuple(mine) if indexed else (),
                    _prices(prices, mine) if indexed else {},
                    mined.sats(mid, lo, hi) if mined is not None and shared else 0,
                )
            )  # fmt: skip
    return out


def _merged(windows: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Overlapping or touching windows joined, sorted; empty ones dropped."""
    out: list[tuple[int, int]] = []
    for lo, hi in sorted(w for w in windows if w[1] > w[0]):
        if out and lo <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], hi))
        else:
            out.append((lo, hi))
    return out


def _inside(windows: list[tuple[int, int]], t: int) -> bool:
    i = bisect_right(windows, (t, _FOREVER)) - 1
    return i >= 0 and windows[i][0] <= t < windows[i][1]


def _curtailed(u: Usage) -> Usage:
    return Usage(u.seconds, u.energy_j, u.running_s, u.curtailed_s + u.down_s, 0)


def _clip(a: Assignment, period: Period) -> tuple[int, int]:
    end = period.end if a.end is None else min(a.end, period.end)
    return max(a.start, period.start), end


def _midnights(windows: list[tuple[int, int]]) -> set[int]:
    out: set[int] = set()
    for lo, hi in windows:
        out.update(range(-(-lo // SECONDS_PER_DAY) * SECONDS_PER_DAY, hi, SECONDS_PER_DAY))
    return out


def _metered(readings: list[MeterReading], lo: int, hi: int) -> Fraction | None:
    a, b = interpolate(readings, lo), interpolate(readings, hi)
    return None if a is None or b is None else b - a


def _prices(prices: BtcPrices | None, days: list[tuple[int, Usage]]) -> dict[int, Fraction]:
    if prices is None:
        return {}
    return {d: p for d, _ in days if (p := prices.usd(d)) is not None}


def run_period(
    store: HostingStore,
    period: Period,
    power: PowerSource,
    *,
    now: int,
    mined: MinedSats | None = None,
    prices: BtcPrices | None = None,
    curtailment: Curtailment | None = None,
    max_hold_s: int = DEFAULT_MAX_HOLD_S,
) -> RunReport:
    """Bill every customer with machines or charges in `period` (one transaction)."""
    report = RunReport(str(period))
    with store.tx():
        months = measure(store, period, power, mined=mined, prices=prices,
                         curtailment=curtailment, max_hold_s=max_hold_s)  # fmt: skip
        charges: dict[str, list[Charge]] = defaultdict(list)
        for c in store.charges(period.start, period.end):
            charges[c.customer_id].append(c)
        deposits = _deposits(store)
        drafts = {r.customer_id for r in store.invoices(str(period)) if r.kind == "invoice"}
        for cid in sorted(set(months) | set(charges) | drafts):
            _bill_one(store, report, period, cid, months.get(cid, []), charges.get(cid, []),
                      deposits.get(cid, 0), now)  # fmt: skip
    return report


def _deposits(store: HostingStore) -> dict[str, int]:
    out: dict[str, int] = defaultdict(int)
    for c in store.contracts():
        out[c.customer_id] += c.terms.deposit_cents
    return out


def _bill_one(
    store: HostingStore, report: RunReport, period: Period, cid: str,
    months: list[MachineMonth], charges: list[Charge], deposit: int, now: int,
) -> None:  # fmt: skip
    old = store.latest(cid, str(period))
    if old is not None and old.state in CLOSED:
        report.closed.append(cid)
        return
    draft = old if old is not None and old.state is InvoiceState.DRAFT else None
    prepaid = store.prepaid_available(cid, excluding=None if draft is None else draft.id)
    try:
        inv = build_invoice(cid, period, months, charges, prepaid, deposit)
    except HostingError as exc:
        report.errors[cid] = str(exc)
        return
    used = -sum(x.cents for x in inv.lines if x.kind == "prepayment")
    if draft is not None and draft.document == inv.to_json() and draft.prepaid_cents == used:
        report.unchanged.append(cid)
        return
    revision = 1 if old is None else old.revision + (0 if draft is not None else 1)
    store.write_invoice(
        inv, number=invoice_number(cid, period, revision, "invoice"), kind="invoice",
        revision=revision, state=InvoiceState.DRAFT, now=now, prepaid_cents=used,
        replace_id=None if draft is None else draft.id,
    )  # fmt: skip
    report.written.append(cid)


# -- the lifecycle ----------------------------------------------------------------------------


def _get(store: HostingStore, number: str) -> InvoiceRecord:
    rec = store.invoice(number)
    if rec is None:
        raise HostingError(f"no invoice {number!r}")
    return rec


def issue(store: HostingStore, number: str, now: int) -> InvoiceRecord:
    """Draft -> Issued: closed from now on, due `net_days` later; not before the period ends
    (a draft of a running month is an estimate)."""
    with store.tx():
        rec = _get(store, number)
        check_transition(rec.state, InvoiceState.ISSUED)
        if rec.kind == "invoice" and now < Period.parse(rec.period).end:
            raise StateError(f"{number}: period {rec.period} has not ended; a draft is an estimate")
        free = store.prepaid_available(rec.customer_id, excluding=rec.id)
        if rec.prepaid_cents > free:
            raise StateError(
                f"{number}: applies {rec.prepaid_cents} cents of prepayment but only {free} are "
                "left (another invoice used them): run the bill again"
            )
        due = now + rec.invoice.net_days * SECONDS_PER_DAY
        store.set_state(rec.id, InvoiceState.ISSUED, issued_at=now, due_at=due)
    return _get(store, number)


def pay(store: HostingStore, number: str, now: int) -> InvoiceRecord:
    """Issued or Overdue -> Paid."""
    with store.tx():
        rec = _get(store, number)
        check_transition(rec.state, InvoiceState.PAID)
        store.set_state(rec.id, InvoiceState.PAID, paid_at=now)
    return _get(store, number)


def mark_overdue(store: HostingStore, now: int) -> list[str]:
    """Issued invoices past their due date -> Overdue; their numbers."""
    done: list[str] = []
    with store.tx():
        for rec in store.invoices(state=InvoiceState.ISSUED):
            if rec.due_at is not None and rec.due_at < now:
                store.set_state(rec.id, InvoiceState.OVERDUE)
                done.append(rec.number)
    return done


def reissue(store: HostingStore, customer_id: str, period: Period, now: int) -> InvoiceRecord:
    """Credit the customer's closed invoice for `period` in full; the next run drafts anew.

    The credit note is Issued at once and carries the closed invoice's lines negated. A Paid
    invoice's amount goes back to the customer as a prepayment (applied to the next bills).
    """
    with store.tx():
        old = store.latest(customer_id, str(period))
        if old is None or old.state not in CLOSED:
            raise StateError(f"{customer_id} {period}: no closed invoice to re-issue")
        check_transition(old.state, InvoiceState.CREDITED)
        inv = old.invoice
        lines = tuple(
            replace(x, quantity=-x.quantity, cents=-x.cents, sats=-x.sats) for x in inv.lines
        )
        note = replace(inv, lines=lines)
        number = invoice_number(customer_id, period, old.revision, "credit_note")
        iid = store.write_invoice(
            note, number=number, kind="credit_note", revision=old.revision,
            state=InvoiceState.ISSUED, now=now, credits_number=old.number,
        )  # fmt: skip
        store.set_state(iid, InvoiceState.ISSUED, issued_at=now)
        if old.state is InvoiceState.PAID and old.total_cents > 0:
            store.add_prepayment(customer_id, old.total_cents, now, f"refund of {old.number}")
        store.set_state(old.id, InvoiceState.CREDITED)
    return _get(store, number)


def import_meter(store: HostingStore, readings: list[MeterReading]) -> int:
    """Store parsed readings, all or none: unknown machines or registers that go backwards
    against what is stored are reported by line (InputError); how many readings were new."""
    known = store.machines()
    problems = [
        (r.line, f"unknown machine {r.machine_id!r}") for r in readings if r.machine_id not in known
    ]
    if problems:
        raise InputError("meter readings", problems)
    with store.tx():
        merged = store.machine_readings({r.machine_id for r in readings}) + readings
        problems = register_problems(merged)
        if problems:
            raise InputError("meter readings", [(n or 0, msg) for n, msg in problems])
        return store.add_readings(readings)
