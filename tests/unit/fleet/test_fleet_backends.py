"""The declarative backend map: capability flags, commands a backend lacks, merge order."""

from __future__ import annotations

import pytest

from hashfarm.fleet.model import Hashrates, MachineSnapshot, merge
from hashfarm.fleet.sources import BACKENDS, Capability, read


def test_capabilities_are_declared_per_backend():
    assert BACKENDS["btminer"].can(Capability.POWER)
    assert not BACKENDS["bmminer"].can(Capability.POWER)  # power is derived for stock Antminer
    assert BACKENDS["luxos"].can(Capability.ERRORS)
    assert not BACKENDS["bmminer"].can(Capability.ERRORS)
    assert BACKENDS["avalon"].can(Capability.MULTI_COMMAND)
    assert not BACKENDS["bmminer"].can(Capability.MULTI_COMMAND)  # some X19 reject it
    assert BACKENDS["axeos"].transport == "http"
    assert BACKENDS["avalon"].transport == "cgminer-rpc"


def test_a_command_the_machine_lacks_is_never_sent():
    # the poller asks the map; `estats` is an Avalon command, `events` a LuxOS one
    assert BACKENDS["avalon"].supports("pools+summary+stats")
    assert not BACKENDS["bmminer"].supports("estats")
    assert not BACKENDS["bmminer"].supports("summary+events")
    assert not BACKENDS["bmminer"].supports("summary+pools")  # not declared: send them apart
    assert BACKENDS["luxos"].supports("events")
    with pytest.raises(ValueError, match="backend 'bmminer' has no command 'events'"):
        read(BACKENDS["bmminer"], {"events": b"{}"})


def test_no_replies_is_an_empty_snapshot_not_an_error():
    s = read(BACKENDS["bmminer"], {}, model="Antminer S9")
    assert s == MachineSnapshot(backend="bmminer", model="Antminer S9")


def test_merge_first_wins_per_field_and_hashrate_per_window():
    a = MachineSnapshot(backend="x", uptime_s=5, hashrate=Hashrates(five_sec_hs=1), repairs=("r",))
    b = MachineSnapshot(
        backend="x", uptime_s=9, model="M", hashrate=Hashrates(five_sec_hs=2, average_hs=3),
        repairs=("r", "s"),
    )  # fmt: skip
    m = merge(a, b)
    assert (m.uptime_s, m.model) == (5, "M")
    assert m.hashrate == Hashrates(five_sec_hs=1, average_hs=3)
    assert m.repairs == ("r", "s")
    with pytest.raises(ValueError, match="at least one"):
        merge()


def test_multi_command_section_missing_is_a_reply_error(capture):
    from hashfarm.fleet.errors import ReplyError

    raw = capture("avalon-10xx-cgminer-pools+summary+stats.raw")
    with pytest.raises(ReplyError, match="no 'devs' section"):
        read(BACKENDS["avalon"], {"pools+summary+devs": raw})
