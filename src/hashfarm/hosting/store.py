"""The hosting tables in SQL: SQLite (embedded, the default) or PostgreSQL by URL.

`connect(url)` opens and migrates (`schema`) and returns a synchronous `HostingStore`: the
bill run and the CLI compose their reads and writes inside `store.tx()`, so a run, an import
or a state change is one database transaction (a failed one changes nothing). SQL is written
with `?` placeholders; PostgreSQL gets them as `%s`. Driver errors leave this module as
`HostingError`; psycopg is imported only when a PostgreSQL URL is opened.
"""

from __future__ import annotations

import contextlib
import re
import sqlite3
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

from hashfarm.hosting.contracts import Terms
from hashfarm.hosting.errors import HostingError
from hashfarm.hosting.inputs import MeterReading
from hashfarm.hosting.invoice import Charge, Invoice, InvoiceState, Machine
from hashfarm.hosting.money import to_text
from hashfarm.hosting.promise import Purchase
from hashfarm.hosting.schema import Dialect, migrate_postgres, migrate_sqlite

SQLITE_PREFIX = "sqlite:///"
POSTGRES_PREFIXES = ("postgresql://", "postgres://")
_BUSY_TIMEOUT_MS = 5000  # a write waits this long for another writer's lock before failing
_PG_WRITE_LOCK = 0x686F7374_77  # advisory lock key ("host" + "w"): one hosting writer at a time
_PURCHASE_COLS = (
    "machine_id, day, price_cents, currency, hashrate_ths, power_w, difficulty, btc_price, "
    "fees_btc, power_rate, hosting_cents_month, height"
)
_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@-]{0,63}")  # ids end up in invoice numbers and files


def check_id(what: str, value: str) -> str:
    """`value` if it is a usable id (1-64 letters, digits, `._:@-`, starting alphanumeric)."""
    if not _ID.fullmatch(value):
        raise HostingError(f"{what} {value!r}: use 1-64 letters, digits or ._:@- (no spaces)")
    return value


@dataclass(frozen=True, slots=True)
class Customer:
    id: str
    name: str
    email: str


@dataclass(frozen=True, slots=True)
class Contract:
    id: str
    customer_id: str
    terms: Terms


@dataclass(frozen=True, slots=True)
class Assignment:
    """A machine hosted for a customer under a contract over [start, end) (end None: open)."""

    machine_id: str
    customer_id: str
    contract_id: str
    start: int
    end: int | None


@dataclass(frozen=True, slots=True)
class InvoiceRecord:
    """A stored invoice or credit note: its document and where it stands."""

    id: int
    number: str
    customer_id: str
    period: str
    kind: str
    revision: int
    state: InvoiceState
    total_cents: int
    total_sats: int
    prepaid_cents: int
    document: str
    issued_at: int | None
    due_at: int | None
    paid_at: int | None
    credits_number: str | None

    @property
    def invoice(self) -> Invoice:
        return Invoice.from_json(self.document)


_INVOICE_COLS = (
    "id, number, customer_id, period, kind, revision, state, total_cents, total_sats, "
    "prepaid_cents, document, issued_at, due_at, paid_at, credits_number"
)


class HostingStore:
    """One synchronous DB-API connection (sqlite3 or psycopg) and the hosting SQL."""

    def __init__(self, conn: Any, dialect: Dialect, where: str) -> None:
        self.conn = conn
        self.dialect = dialect
        self.where = where

    def q(self, sql: str, params: Sequence[object] = ()) -> list[tuple[Any, ...]]:
        """Run one statement; its rows (empty for writes)."""
        try:
            if self.dialect == "postgresql":
                cur = self.conn.execute(sql.replace("?", "%s"), tuple(params))
                return list(cur.fetchall()) if cur.description is not None else []
            return list(self.conn.execute(sql, tuple(params)).fetchall())
        except sqlite3.Error as exc:
            raise HostingError(f"sqlite {self.where}: {exc}") from exc
        except Exception as exc:
            if type(exc).__module__.startswith("psycopg"):
                raise HostingError(f"postgresql: {exc}") from exc
            raise

    def many(self, sql: str, rows: Sequence[Sequence[object]]) -> None:
        """Run one statement for many rows."""
        if not rows:
            return
        if self.dialect == "postgresql":
            try:
                with self.conn.cursor() as cur:
                    cur.executemany(sql.replace("?", "%s"), [tuple(r) for r in rows])
            except Exception as exc:
                if type(exc).__module__.startswith("psycopg"):
                    raise HostingError(f"postgresql: {exc}") from exc
                raise
            return
        try:
            self.conn.executemany(sql, [tuple(r) for r in rows])
        except sqlite3.Error as exc:
            raise HostingError(f"sqlite {self.where}: {exc}") from exc

    @contextlib.contextmanager
    def tx(self) -> Iterator[None]:
        """One transaction: committed when the block ends, rolled back on any exception.

        Writers take turns, as SQLite's BEGIN IMMEDIATE makes them: on PostgreSQL a
        transaction-scoped advisory lock, so two bill runs never both draft one invoice.
        """
        if self.dialect == "postgresql":
            with self.conn.transaction():
                self.conn.execute("SELECT pg_advisory_xact_lock(%s)", (_PG_WRITE_LOCK,))
                yield
            return
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        self.conn.execute("COMMIT")

    def close(self) -> None:
        self.conn.close()

    # -- customers, contracts, machines ---------------------------------------------------

    def add_customer(self, c: Customer, now: int) -> None:
        check_id("customer", c.id)
        if self.customer(c.id) is not None:
            raise HostingError(f"customer {c.id!r} already exists")
        self.q(
            "INSERT INTO hosting_customers (id, name, email, created_at) VALUES (?, ?, ?, ?)",
            (c.id, c.name, c.email, now),
        )

    def customer(self, cid: str) -> Customer | None:
        rows = self.q("SELECT id, name, email FROM hosting_customers WHERE id = ?", (cid,))
        return Customer(*rows[0]) if rows else None

    def customers(self) -> list[Customer]:
        return [
            Customer(*r)
            for r in self.q("SELECT id, name, email FROM hosting_customers ORDER BY id")
        ]

    def add_contract(self, c: Contract, now: int) -> None:
        check_id("contract", c.id)
        if self.customer(c.customer_id) is None:
            raise HostingError(f"no customer {c.customer_id!r}")
        if self.contract(c.id) is not None:
            raise HostingError(f"contract {c.id!r} already exists")
        self.q(
            "INSERT INTO hosting_contracts (id, customer_id, terms, created_at) "
            "VALUES (?, ?, ?, ?)",
            (c.id, c.customer_id, c.terms.to_json(), now),
        )

    def contract(self, cid: str) -> Contract | None:
        rows = self.q("SELECT id, customer_id, terms FROM hosting_contracts WHERE id = ?", (cid,))
        return Contract(rows[0][0], rows[0][1], Terms.from_json(rows[0][2])) if rows else None

    def contracts(self, customer_id: str | None = None) -> list[Contract]:
        rows = self.q("SELECT id, customer_id, terms FROM hosting_contracts ORDER BY id")
        return [
            Contract(i, c, Terms.from_json(t))
            for i, c, t in rows
            if customer_id is None or c == customer_id
        ]

    def put_machine(self, m: Machine) -> None:
        """Add a machine or update its figures."""
        check_id("machine", m.id)
        if self.machine(m.id) is None:
            self.q(
                "INSERT INTO hosting_machines (id, model, nameplate_w, rated_w) "
                "VALUES (?, ?, ?, ?)",
                (m.id, m.model, m.nameplate_w, m.rated_w),
            )
        else:
            self.q(
                "UPDATE hosting_machines SET model = ?, nameplate_w = ?, rated_w = ? WHERE id = ?",
                (m.model, m.nameplate_w, m.rated_w, m.id),
            )

    def machine(self, mid: str) -> Machine | None:
        rows = self.q(
            "SELECT id, model, nameplate_w, rated_w FROM hosting_machines WHERE id = ?", (mid,)
        )
        return Machine(rows[0][0], rows[0][1], int(rows[0][2]), int(rows[0][3])) if rows else None

    def machines(self) -> dict[str, Machine]:
        rows = self.q("SELECT id, model, nameplate_w, rated_w FROM hosting_machines")
        return {r[0]: Machine(r[0], r[1], int(r[2]), int(r[3])) for r in rows}

    # -- purchases (the seller's promise: hosting/promise.py) ------------------------------

    def put_purchase(self, p: Purchase) -> None:
        """Record (or replace) a machine's purchase and the seller's purchase-day inputs."""
        if self.machine(p.machine_id) is None:
            raise HostingError(f"no machine {p.machine_id!r}")
        self.q("DELETE FROM hosting_purchases WHERE machine_id = ?", (p.machine_id,))
        self.q(
            f"INSERT INTO hosting_purchases ({_PURCHASE_COLS}) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (p.machine_id, p.day, p.price_cents, p.currency, to_text(p.hashrate_ths), p.power_w,
             to_text(p.difficulty), to_text(p.btc_price), to_text(p.fees_btc),
             to_text(p.power_rate), p.hosting_cents_month, p.height),
        )  # fmt: skip

    def purchases(self) -> dict[str, Purchase]:
        """Every recorded purchase by machine id."""
        rows = self.q(f"SELECT {_PURCHASE_COLS} FROM hosting_purchases ORDER BY machine_id")
        return {
            r[0]: Purchase(r[0], int(r[1]), int(r[2]), r[3], Fraction(r[4]), int(r[5]),
                           Fraction(r[6]), Fraction(r[7]), Fraction(r[8]), Fraction(r[9]),
                           int(r[10]), int(r[11]))
            for r in rows
        }  # fmt: skip

    # -- assignments ----------------------------------------------------------------------

    def assign(self, machine_id: str, contract_id: str, start: int) -> Assignment:
        """Host `machine_id` under `contract_id` from `start` on, ending its open assignment."""
        contract = self.contract(contract_id)
        if contract is None:
            raise HostingError(f"no contract {contract_id!r}")
        if self.machine(machine_id) is None:
            raise HostingError(f"no machine {machine_id!r}")
        history = self.assignments(machine_id)
        if history and history[-1].start >= start:
            raise HostingError(
                f"{machine_id}: already assigned from {history[-1].start}; a move must be later"
            )
        if history and (history[-1].end is None or history[-1].end > start):
            self.q(
                "UPDATE hosting_assignments SET end_time = ? "
                "WHERE machine_id = ? AND start_time = ?",
                (start, machine_id, history[-1].start),
            )
        self.q(
            "INSERT INTO hosting_assignments (machine_id, customer_id, contract_id, start_time) "
            "VALUES (?, ?, ?, ?)",
            (machine_id, contract.customer_id, contract_id, start),
        )
        return Assignment(machine_id, contract.customer_id, contract_id, start, None)

    def unassign(self, machine_id: str, end: int) -> None:
        """End the machine's open assignment at `end` (it leaves the farm)."""
        history = self.assignments(machine_id)
        if not history or history[-1].end is not None or history[-1].start >= end:
            raise HostingError(f"{machine_id}: no open assignment that started before {end}")
        self.q(
            "UPDATE hosting_assignments SET end_time = ? WHERE machine_id = ? AND start_time = ?",
            (end, machine_id, history[-1].start),
        )

    def assignments(self, machine_id: str | None = None) -> list[Assignment]:
        """Every assignment (of one machine), by machine and start."""
        where, params = ("WHERE machine_id = ? ", (machine_id,)) if machine_id else ("", ())
        rows = self.q(
            "SELECT machine_id, customer_id, contract_id, start_time, end_time "
            f"FROM hosting_assignments {where}ORDER BY machine_id, start_time",
            params,
        )
        return [
            Assignment(r[0], r[1], r[2], int(r[3]), None if r[4] is None else int(r[4]))
            for r in rows
        ]

    def overlapping(self, start: int, end: int) -> list[Assignment]:
        """Assignments that overlap [start, end)."""
        rows = self.q(
            "SELECT machine_id, customer_id, contract_id, start_time, end_time "
            "FROM hosting_assignments WHERE start_time < ? AND (end_time IS NULL OR end_time > ?) "
            "ORDER BY machine_id, start_time",
            (end, start),
        )
        return [
            Assignment(r[0], r[1], r[2], int(r[3]), None if r[4] is None else int(r[4]))
            for r in rows
        ]

    # -- meter readings, charges, prepayments ---------------------------------------------

    def readings(self, start: int, end: int) -> dict[str, list[MeterReading]]:
        """Every machine's readings with start <= time <= end, sorted by time."""
        out: dict[str, list[MeterReading]] = {}
        rows = self.q(
            "SELECT machine_id, time, kwh FROM hosting_meter_readings "
            "WHERE time >= ? AND time <= ? "
            "ORDER BY machine_id, time",
            (start, end),
        )
        for mid, t, kwh in rows:
            out.setdefault(mid, []).append(MeterReading(mid, int(t), Fraction(kwh)))
        return out

    def add_readings(self, rows: Sequence[MeterReading]) -> int:
        """Insert readings (one already stored, or repeated, is skipped); how many were new."""
        have = {(r.machine_id, r.time) for r in self.machine_readings({r.machine_id for r in rows})}
        new: dict[tuple[str, int], MeterReading] = {}
        for r in rows:
            if (r.machine_id, r.time) not in have:
                new.setdefault((r.machine_id, r.time), r)
        self.many(
            "INSERT INTO hosting_meter_readings (machine_id, time, kwh) VALUES (?, ?, ?)",
            [(r.machine_id, r.time, to_text(r.kwh)) for r in new.values()],
        )
        return len(new)

    def machine_readings(self, machine_ids: set[str]) -> list[MeterReading]:
        """Every stored reading of these machines."""
        out: list[MeterReading] = []
        for mid in sorted(machine_ids):
            rows = self.q(
                "SELECT time, kwh FROM hosting_meter_readings WHERE machine_id = ? ORDER BY time",
                (mid,),
            )
            out += [MeterReading(mid, int(t), Fraction(k)) for t, k in rows]
        return out

    def add_charge(self, c: Charge) -> None:
        if self.customer(c.customer_id) is None:
            raise HostingError(f"no customer {c.customer_id!r}")
        self.q(
            "INSERT INTO hosting_charges (customer_id, machine_id, time, description, cents) "
            "VALUES (?, ?, ?, ?, ?)",
            (c.customer_id, c.machine_id, c.time, c.description, c.cents),
        )

    def charges(self, start: int, end: int) -> list[Charge]:
        rows = self.q(
            "SELECT customer_id, machine_id, time, description, cents FROM hosting_charges "
            "WHERE time >= ? AND time < ? ORDER BY id",
            (start, end),
        )
        return [Charge(c, m, int(t), d, int(x)) for c, m, t, d, x in rows]

    def add_prepayment(self, customer_id: str, cents: int, now: int, note: str = "") -> None:
        if self.customer(customer_id) is None:
            raise HostingError(f"no customer {customer_id!r}")
        if cents <= 0:
            raise HostingError("a prepayment must be positive")
        self.q(
            "INSERT INTO hosting_prepayments (customer_id, time, cents, note) VALUES (?, ?, ?, ?)",
            (customer_id, now, cents, note),
        )

    def prepaid_available(self, customer_id: str, excluding: int | None = None) -> int:
        """Prepayments not yet applied on a live (not credited) invoice, except `excluding`."""
        paid = self.q(
            "SELECT COALESCE(SUM(cents), 0) FROM hosting_prepayments WHERE customer_id = ?",
            (customer_id,),
        )[0][0]
        used = self.q(
            "SELECT COALESCE(SUM(prepaid_cents), 0) FROM hosting_invoices WHERE customer_id = ? "
            "AND kind = 'invoice' AND state <> 'credited' AND id <> ?",
            (customer_id, -1 if excluding is None else excluding),
        )[0][0]
        return int(paid) - int(used)

    # -- invoices -------------------------------------------------------------------------

    def invoices(
        self,
        period: str | None = None,
        customer_id: str | None = None,
        state: InvoiceState | None = None,
    ) -> list[InvoiceRecord]:
        """Invoices and credit notes (of one period, of one customer, in one state)."""
        where: list[str] = []
        params: list[object] = []
        wanted = (("period", period), ("customer_id", customer_id),
                  ("state", None if state is None else state.value))  # fmt: skip
        for column, value in wanted:
            if value is not None:
                where.append(f"{column} = ?")
                params.append(value)
        sql = f"SELECT {_INVOICE_COLS} FROM hosting_invoices "
        if where:
            sql += "WHERE " + " AND ".join(where) + " "
        rows = self.q(sql + "ORDER BY period, customer_id, kind, revision", params)
        return [_record(r) for r in rows]

    def invoice(self, number: str) -> InvoiceRecord | None:
        rows = self.q(f"SELECT {_INVOICE_COLS} FROM hosting_invoices WHERE number = ?", (number,))
        return _record(rows[0]) if rows else None

    def latest(self, customer_id: str, period: str) -> InvoiceRecord | None:
        """The newest revision of the customer's invoice for `period`."""
        rows = self.q(
            f"SELECT {_INVOICE_COLS} FROM hosting_invoices WHERE customer_id = ? AND period = ? "
            "AND kind = 'invoice' ORDER BY revision DESC LIMIT 1",
            (customer_id, period),
        )
        return _record(rows[0]) if rows else None

    def write_invoice(
        self, inv: Invoice, *, number: str, kind: str, revision: int, state: InvoiceState,
        now: int, prepaid_cents: int = 0, replace_id: int | None = None,
        credits_number: str | None = None,
    ) -> int:  # fmt: skip
        """Insert (or, for a draft, replace `replace_id`'s) invoice with its lines; its id."""
        args = (inv.customer_id, str(inv.period), kind, revision, state.value, inv.currency,
                inv.total_cents, inv.total_sats, prepaid_cents, inv.to_json(), now)  # fmt: skip
        if replace_id is not None:
            self.q("DELETE FROM hosting_invoice_lines WHERE invoice_id = ?", (replace_id,))
            self.q(
                "UPDATE hosting_invoices SET customer_id = ?, period = ?, kind = ?, revision = ?, "
                "state = ?, currency = ?, total_cents = ?, total_sats = ?, prepaid_cents = ?, "
                "document = ?, created_at = ? WHERE id = ?",
                (*args, replace_id),
            )
            iid = replace_id
        else:
            self.q(
                "INSERT INTO hosting_invoices (number, customer_id, period, kind, revision, state, "
                "currency, total_cents, total_sats, prepaid_cents, document, created_at, "
                "credits_number) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (number, *args, credits_number),
            )
            iid = int(self.q("SELECT id FROM hosting_invoices WHERE number = ?", (number,))[0][0])
        self.many(
            "INSERT INTO hosting_invoice_lines (invoice_id, line_no, kind, machine_id, "
            "description, "
            "quantity, unit, unit_price, cents, sats) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (iid, n, x.kind, x.machine_id, x.description, to_text(x.quantity), x.unit,
                 to_text(x.unit_price), x.cents, x.sats)
                for n, x in enumerate(inv.lines, start=1)
            ],
        )  # fmt: skip
        return iid

    def set_state(self, iid: int, state: InvoiceState, *, issued_at: int | None = None,
                  due_at: int | None = None, paid_at: int | None = None) -> None:  # fmt: skip
        """Record a state change (the caller checked it is legal)."""
        self.q(
            "UPDATE hosting_invoices SET state = ?, issued_at = COALESCE(?, issued_at), "
            "due_at = COALESCE(?, due_at), paid_at = COALESCE(?, paid_at) WHERE id = ?",
            (state.value, issued_at, due_at, paid_at, iid),
        )

    def line_sums(self, iid: int) -> tuple[int, int]:
        """(cents, sats) summed over the stored lines: must equal the invoice's totals."""
        row = self.q(
            "SELECT COALESCE(SUM(cents), 0), COALESCE(SUM(sats), 0) FROM hosting_invoice_lines "
            "WHERE invoice_id = ?",
            (iid,),
        )[0]
        return int(row[0]), int(row[1])


def _record(r: tuple[Any, ...]) -> InvoiceRecord:
    def opt(v: Any) -> int | None:
        return None if v is None else int(v)

    return InvoiceRecord(
        int(r[0]), r[1], r[2], r[3], r[4], int(r[5]), InvoiceState(r[6]), int(r[7]), int(r[8]),
        int(r[9]), r[10], opt(r[11]), opt(r[12]), opt(r[13]), r[14],
    )  # fmt: skip


def connect(url: str) -> HostingStore:
    """A migrated `HostingStore` for `url` (a SQLite file is created when missing)."""
    if url.startswith(SQLITE_PREFIX):
        path = Path(url[len(SQLITE_PREFIX) :])
        if not path.name:
            raise HostingError(f"database URL {url!r} names no file")
        try:
            conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            conn.execute(f"PRAGMA busy_timeout = {_BUSY_TIMEOUT_MS}")
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA foreign_keys = ON")
            migrate_sqlite(conn)
        except sqlite3.Error as exc:
            raise HostingError(f"sqlite {path}: {exc}") from exc
        return HostingStore(conn, "sqlite", str(path))
    if url.startswith(POSTGRES_PREFIXES):
        return _connect_postgres(url)
    raise HostingError("database URL must be sqlite:///PATH or postgresql://...")


def _connect_postgres(url: str) -> HostingStore:
    try:
        import psycopg
    except ImportError as exc:
        raise HostingError(
            "a PostgreSQL database needs psycopg, which is not installed: "
            "pip install 'hashfarm[postgres]'"
        ) from exc
    try:
        conn = psycopg.connect(url, autocommit=True, application_name="hashfarm-hosting")
        migrate_postgres(conn)
    except psycopg.Error as exc:
        raise HostingError(
            f"postgresql: cannot open the hosting database: {exc.__class__.__name__}"
        ) from exc
    return HostingStore(conn, "postgresql", "postgresql")
