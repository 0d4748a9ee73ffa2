"""hashfarm accounting: turning accepted shares into exact, explainable satoshis (layer 4).

Pure modules (no I/O, time and chain view passed in):

* `money`: the fee and the exact split (largest remainder, ties by account id);
* `inputs`: what accounting reads (shares, found blocks, job terms), declared here so
  accounting never imports the pool;
* `window` / `fastwindow`: PPLNS/TIDES windows and PROP rounds (reference and numpy);
* `schemes`: SOLO, PROP, PPLNS, TIDES, PPS, FPPS and what a block credits;
* `tides`: the coinbase outputs of a TIDES job (dust and output-count rules);
* `switching`: scheme switches, the epochs they make, crediting a whole history;
* `lifecycle`: found -> immature -> mature -> credited, or orphaned;
* `ledger` / `entries`: the double-entry ledger and the transactions events post.

I/O lives in `schema` (the SQL tables, SQLite and PostgreSQL), `store` (the ledger in SQL),
`crediting` (each block event as one transaction) and `service` (the crediting service that
follows the node); `statements` reads the books back.
See docs/accounting.md for every formula and rounding rule, and for what is wired so far.
"""

from hashfarm.accounting.inputs import FoundBlock, JobTerms, Share, ShareLike
from hashfarm.accounting.ledger import AccountingError, Ledger, Posting, Transaction
from hashfarm.accounting.lifecycle import COINBASE_MATURITY, BlockState, TrackedBlock, advance
from hashfarm.accounting.money import Fee, split_exact
from hashfarm.accounting.schemes import (
    BlockCredit,
    Pplns,
    Pps,
    PpsAccrual,
    Prop,
    Scheme,
    Solo,
    Tides,
    credit_block,
    share_value,
)
from hashfarm.accounting.switching import SchemeSwitch, plan_epochs, settle_history
from hashfarm.accounting.tides import CoinbasePlan, plan_coinbase

__all__ = [
    "COINBASE_MATURITY",
    "AccountingError",
    "BlockCredit",
    "BlockState",
    "CoinbasePlan",
    "Fee",
    "FoundBlock",
    "JobTerms",
    "Ledger",
    "Posting",
    "Pplns",
    "Pps",
    "PpsAccrual",
    "Prop",
    "Scheme",
    "SchemeSwitch",
    "Share",
    "ShareLike",
    "Solo",
    "Tides",
    "TrackedBlock",
    "Transaction",
    "advance",
    "credit_block",
    "plan_coinbase",
    "plan_epochs",
    "settle_history",
    "share_value",
    "split_exact",
]
