"""One simulated month at a hosting farm (November 2026), shared by the hosting tests.

Three customers, three contract types, four machines, hourly power samples (time passed in):

* alpha, nameplate 3,250 W x hours x $0.065/kWh, $10/machine/month, 95 % SLA, $500 deposit:
  m1 all month (10 h curtailed on Nov 5, 48 h down Nov 10-11) and m4 until Nov 16 00:00;
  a $45.50 repair on m1.
* beta, metered x $0.07/kWh, $12/machine/month, $100 prepaid: m2 all month, m4 from Nov 16.
* gamma, revenue share 15 % of mined sats, $5/machine/month: m3 all month, no samples on
  Nov 20 (no data counts as down), 12,345 sats mined a day.

The expected figures are worked out by hand in tests/integration/test_hosting_month.py.
"""

from __future__ import annotations

from collections.abc import Callable
from fractions import Fraction
from pathlib import Path
from typing import Any

from hashfarm.hosting.contracts import Method, Terms
from hashfarm.hosting.inputs import MeterReading
from hashfarm.hosting.invoice import Machine
from hashfarm.hosting.period import Period, parse_time
from hashfarm.hosting.power import SampleSeries, State
from hashfarm.hosting.sources import DailyMined, SeriesPowerSource
from hashfarm.hosting.store import Contract, Customer, HostingStore

PERIOD = Period(2026, 11)
H = 3600
T0 = PERIOD.start
NOW = parse_time("2026-12-01T09:00:00Z")
MOVE = parse_time("2026-11-16")

TERMS = {
    "alpha-np": Terms(Method.NAMEPLATE, rate=Fraction("0.065"), hosting_fee_cents=1000,
                      sla_bps=9500, deposit_cents=50000),
    "beta-me": Terms(Method.METERED, rate=Fraction("0.07"), hosting_fee_cents=1200),
    "gamma-rs": Terms(Method.REVENUE_SHARE, share_bps=1500, hosting_fee_cents=500),
}  # fmt: skip
MACHINES = [
    Machine("m1", "Antminer S19 Pro", 3250, 3250),
    Machine("m2", "Antminer S19", 3250, 3250),
    Machine("m3", "Antminer S19 Pro", 3250, 3250),
    Machine("m4", "Whatsminer M20S", 1500, 1400),
]
METER_CSV = """machine_id,time,kwh
m2,2026-10-31T12:00:00Z,5000.000
m2,2026-11-01T12:00:00Z,5075.000
m2,2026-11-30T12:00:00Z,7300.000
m2,2026-12-01T12:00:00Z,7375.000
m4,2026-11-16T00:00:00Z,1000
m4,2026-12-01T00:00:00Z,1510.25
"""


def _m1(h: int) -> tuple[int, State]:
    if 4 * 24 + 12 <= h < 4 * 24 + 22:
        return 0, State.CURTAILED
    if 9 * 24 <= h < 11 * 24:
        return 0, State.DOWN
    return 3000, State.RUNNING


def samples() -> dict[str, SampleSeries]:
    """Hourly samples, one before the month (it holds until the month's first sample)."""
    hours = range(-1, 30 * 24)
    rows = {
        "m1": [(T0 + h * H, *_m1(h)) for h in hours],
        "m2": [(T0 + h * H, 3100, State.RUNNING) for h in hours],
        "m3": [(T0 + h * H, 3000, State.RUNNING) for h in hours if not 19 * 24 <= h < 20 * 24],
        "m4": [(T0 + h * H, 1400, State.RUNNING) for h in hours],
    }
    return {mid: SampleSeries.of(r) for mid, r in rows.items()}


def power() -> SeriesPowerSource:
    return SeriesPowerSource(samples())


def mined() -> DailyMined:
    return DailyMined({("m3", d): 12_345 for d in PERIOD.days()})


def samples_csv() -> str:
    lines = ["machine_id,time,watts,state"]
    for mid, s in samples().items():
        for t, w, st in zip(s.times, s.watts, s.states, strict=True):
            lines.append(f"{mid},{int(t)},{int(w)},{State(int(st)).name.lower()}")
    return "\n".join(lines) + "\n"


def mined_csv() -> str:
    return "machine_id,day,sats\n" + "".join(f"m3,{d},12345\n" for d in PERIOD.days())


def set_up(store: HostingStore, readings: list[MeterReading]) -> None:
    """Customers, contracts, machines, assignments (m4 moves on Nov 16), charges, prepayment."""
    from hashfarm.hosting.billing import import_meter
    from hashfarm.hosting.invoice import Charge

    with store.tx():
        for cid in ("alpha", "beta", "gamma"):
            store.add_customer(Customer(cid, cid.title() + " Mining", f"{cid}@example.com"), T0)
        for kid, terms in TERMS.items():
            store.add_contract(Contract(kid, kid.split("-")[0], terms), T0)
        for m in MACHINES:
            store.put_machine(m)
        start = T0 - 10 * 86400
        store.assign("m1", "alpha-np", start)
        store.assign("m2", "beta-me", start)
        store.assign("m3", "gamma-rs", start)
        store.assign("m4", "alpha-np", start)
        store.assign("m4", "beta-me", MOVE)
        store.add_charge(Charge("alpha", "m1", parse_time("2026-11-20T10:00:00Z"),
                                "hashboard repair", 4550))  # fmt: skip
        store.add_prepayment("beta", 10000, T0, "prepaid")
    import_meter(store, readings)


def cli_set_up(hf: Callable[..., Any], tmp_path: Path) -> dict[str, Path]:
    """The same month through the commands (`hf` runs one `hashfarm` command line)."""
    for cid in ("alpha", "beta", "gamma"):
        hf("customer", "add", cid, "--name", f"{cid.title()} Mining", "--at", "2026-10-01")
    hf("contract", "add", "alpha-np", "--customer", "alpha", "--method", "nameplate",
       "--rate", "0.065", "--hosting-fee", "10", "--sla", "95", "--deposit", "500")  # fmt: skip
    hf("contract", "add", "beta-me", "--customer", "beta", "--method", "metered",
       "--rate", "0.07", "--hosting-fee", "12")  # fmt: skip
    hf("contract", "add", "gamma-rs", "--customer", "gamma", "--method", "revenue_share",
       "--share", "15", "--hosting-fee", "5")  # fmt: skip
    for mid, kid in (("m1", "alpha-np"), ("m2", "beta-me"), ("m3", "gamma-rs")):
        hf("contract", "assign", mid, kid, "--from", "2026-10-22", "--nameplate-w", "3250")
    hf("contract", "assign", "m4", "alpha-np", "--from", "2026-10-22", "--nameplate-w", "1500",
       "--rated-w", "1400")  # fmt: skip
    hf("contract", "assign", "m4", "beta-me", "--from", "2026-11-16")
    hf("bill", "charge", "alpha", "45.50", "--description", "hashboard repair",
       "--machine", "m1", "--at", "2026-11-20T10:00:00Z")  # fmt: skip
    hf("customer", "prepay", "beta", "100", "--at", "2026-11-01")
    files = {"meter": tmp_path / "meter.csv", "samples": tmp_path / "samples.csv",
             "mined": tmp_path / "mined.csv"}  # fmt: skip
    files["meter"].write_text(METER_CSV)
    files["samples"].write_text(samples_csv())
    files["mined"].write_text(mined_csv())
    assert "6 readings, 6 new" in hf("meter", "import", str(files["meter"])).output
    return files
