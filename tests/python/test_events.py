"""The event log (``hub.events``): history reads, live tails (blocking and asyncio), durability modes."""

from __future__ import annotations

import asyncio
import datetime as dt
import threading
import time

import pytest

import fleethub
from conftest import publish_many


def _bodies(msgs):
    return [m.body for m in msgs]


@pytest.fixture
def fleet(hub):
    """Four devices on a 4-partition hub, chosen so that at least two partitions are used."""
    devs = [hub.devices.create(f"sensor-{i}") for i in range(4)]
    parts = {fleethub.partition_for(d.device_id, 4) for d in devs}
    assert len(parts) >= 2
    return devs


def test_partitions_and_read_by_partition_and_offset(hub, fleet):
    """partitions() reports begin/end per partition; read(partition, offset) starts at that sequence number."""
    for d in fleet:
        publish_many(hub, d, [f"{d.device_id}:{i}".encode() for i in range(10)])
    parts = hub.events.partitions()
    assert [p["partition"] for p in parts] == [0, 1, 2, 3]
    # Telemetry and the hub's system events (lifecycle, connection state) share the partitions.
    assert sum(len(list(hub.events.read(partition=p["partition"]))) for p in parts) == 40
    for p in parts:
        # (a disconnect event may commit after partitions() was taken: look only below its end)
        msgs = [m for m in hub.events.read(partition=p["partition"], source=None) if m.sequence_number < p["end"]]
        assert len(msgs) == p["end"] - p["begin"]
        assert [m.sequence_number for m in msgs] == list(range(p["begin"], p["end"]))
        assert all(m.partition == p["partition"] for m in msgs)
        assert all(fleethub.partition_for(m.device_id, 4) == p["partition"] for m in msgs)
        assert all(m.offset == str(m.sequence_number) for m in msgs)
        if len(msgs) > 3:
            tail = [m for m in hub.events.read(partition=p["partition"], offset=msgs[3].sequence_number, source=None)
                    if m.sequence_number < p["end"]]
            assert _bodies(tail) == _bodies(msgs[3:])
        assert list(hub.events.read(partition=p["partition"], offset=p["end"])) == []


def test_read_all_is_ordered_by_enqueued_time(hub, fleet):
    """Without a partition, every partition is read and merged by enqueued time; per device the order is kept."""
    for round_ in range(3):
        for d in fleet:
            publish_many(hub, d, [f"{d.device_id}:{round_}".encode()])
    msgs = list(hub.events.read())
    assert len(msgs) == 12
    times = [m.enqueued_time_ms for m in msgs]
    assert times == sorted(times)
    for d in fleet:
        mine = [m.body for m in msgs if m.device_id == d.device_id]
        assert mine == [f"{d.device_id}:{r}".encode() for r in range(3)]


def test_read_by_device(hub, fleet):
    """read(device_id=) returns only that device's messages, in order."""
    for d in fleet:
        publish_many(hub, d, [f"{d.device_id}:{i}".encode() for i in range(5)])
    for d in fleet:
        msgs = list(hub.events.read(device_id=d.device_id))
        assert _bodies(msgs) == [f"{d.device_id}:{i}".encode() for i in range(5)]
        assert {m.device_id for m in msgs} == {d.device_id}
    assert list(hub.events.read(device_id="nobody")) == []


def test_read_since_until(hub, device):
    """since/until (datetime or unix seconds) bound the enqueued time: since inclusive, until exclusive."""
    publish_many(hub, device, [b"early-%d" % i for i in range(5)])
    time.sleep(0.05)
    cut = time.time()
    time.sleep(0.05)
    publish_many(hub, device, [b"late-%d" % i for i in range(5)])
    early = [b"early-%d" % i for i in range(5)]
    late = [b"late-%d" % i for i in range(5)]
    assert _bodies(hub.events.read(since=cut)) == late
    assert _bodies(hub.events.read(until=cut)) == early
    cut_dt = dt.datetime.fromtimestamp(cut, tz=dt.timezone.utc)
    assert _bodies(hub.events.read(since=cut_dt, device_id=device.device_id)) == late
    assert _bodies(hub.events.read(until=cut_dt.replace(tzinfo=None))) == early  # naive = UTC
    assert list(hub.events.read(since=time.time() + 3600)) == []
    all_msgs = list(hub.events.read())
    first_late = all_msgs[5]
    assert first_late.body == b"late-0"
    # a message's own enqueued_time round-trips exactly: since includes it, until excludes it
    assert _bodies(hub.events.read(since=first_late.enqueued_time)) == late
    assert _bodies(hub.events.read(until=first_late.enqueued_time)) == early
    assert all(m.enqueued_time.tzinfo is not None for m in all_msgs)


def test_read_limit(hub, device):
    """limit caps the number of messages returned."""
    publish_many(hub, device, [b"%d" % i for i in range(20)])
    assert _bodies(hub.events.read(limit=5)) == [b"0", b"1", b"2", b"3", b"4"]
    assert len(list(hub.events.read(limit=0))) == 0
    assert len(list(hub.events.read(limit=100))) == 20
    p = fleethub.partition_for(device.device_id, 4)
    first = next(iter(hub.events.read(partition=p))).sequence_number
    assert _bodies(hub.events.read(partition=p, offset=first + 10, limit=3)) == [b"10", b"11", b"12"]


def test_read_small_batches(hub, device):
    """Reading in small internal batches returns the same messages."""
    publish_many(hub, device, [b"%d" % i for i in range(25)])
    assert _bodies(hub.events.read(batch_size=3)) == [b"%d" % i for i in range(25)]


def test_read_argument_errors(hub):
    """A partition out of range, or an offset without a partition, raises InvalidArgumentError."""
    with pytest.raises(fleethub.InvalidArgumentError):
        list(hub.events.read(partition=4))
    with pytest.raises(fleethub.InvalidArgumentError):
        list(hub.events.read(partition=-1))
    with pytest.raises(fleethub.InvalidArgumentError):
        list(hub.events.read(offset=0))
    with pytest.raises(fleethub.InvalidArgumentError):
        hub.events.tail(from_="middle")


def test_message_helpers(hub, device):
    """Message exposes body, text(), json(), to_dict() and a useful repr."""
    publish_many(hub, device, [b'{"a": [1, 2]}'], bag="%24.ct=application%2Fjson&%24.ce=utf-8&k=v")
    (m,) = list(hub.events.read())
    assert m.json() == {"a": [1, 2]}
    assert m.text() == '{"a": [1, 2]}'
    d = m.to_dict()
    assert d["device_id"] == "dev1" and d["properties"] == {"k": "v"} and d["body"] == m.body
    assert d["system_properties"]["content-type"] == "application/json"
    assert "dev1" in repr(m)
    assert abs(m.enqueued_time.timestamp() - time.time()) < 60


def test_tail_blocks_until_messages_arrive(hub, device):
    """tail.get(timeout) blocks until a message is committed by another thread, then returns it."""
    publish_many(hub, device, [b"old"])
    tail = hub.events.tail()  # from the end: "old" is not seen

    def later():
        time.sleep(0.3)
        publish_many(hub, device, [b"new-%d" % i for i in range(5)])

    t = threading.Thread(target=later)
    t0 = time.monotonic()
    t.start()
    got = []
    try:
        while len(got) < 5 and time.monotonic() - t0 < 10:
            got += tail.get(timeout=5)
    finally:
        t.join(10)
    assert time.monotonic() - t0 >= 0.25  # it did wait
    assert _bodies(got) == [b"new-%d" % i for i in range(5)]


def test_tail_get_times_out_with_empty_list(hub, device):
    """tail.get(timeout) returns [] after about the timeout when nothing arrives."""
    tail = hub.events.tail()
    t0 = time.monotonic()
    assert tail.get(timeout=0.4) == []
    assert 0.3 <= time.monotonic() - t0 < 3


def test_tail_from_start_and_batches(hub, device):
    """tail(from_="start") returns retained messages first; batches(timeout) stops when idle."""
    publish_many(hub, device, [b"a", b"b", b"c"])
    tail = hub.events.tail(from_="start")
    got = [m for b in tail.batches(timeout=0.3) for m in b]
    assert _bodies(got) == [b"a", b"b", b"c"]


def test_tail_resume_from_positions(hub, device):
    """tail.positions is a checkpoint: a new tail from it sees only messages committed afterwards."""
    publish_many(hub, device, [b"one", b"two"])
    t1 = hub.events.tail(from_="start")
    assert _bodies(t1.get(timeout=2)) == [b"one", b"two"]
    checkpoint = {p: seq for p, seq in enumerate(t1.positions)}
    publish_many(hub, device, [b"three"])
    t2 = hub.events.tail(from_=checkpoint)
    assert _bodies(t2.get(timeout=5)) == [b"three"]
    assert _bodies(t1.get(timeout=5)) == [b"three"]
    # a checkpoint before the start is clamped to the start
    t3 = hub.events.tail(from_={0: -5, 1: -5, 2: -5, 3: -5})
    assert _bodies([m for b in t3.batches(timeout=0.3) for m in b]) == [b"one", b"two", b"three"]


def test_tail_filters_by_device(hub, fleet):
    """tail(device_id=) yields only that device's messages."""
    a, b = fleet[0], fleet[1]
    tail = hub.events.tail(device_id=a.device_id)
    publish_many(hub, b, [b"b1"])
    publish_many(hub, a, [b"a1", b"a2"])
    publish_many(hub, b, [b"b2"])
    got = [m for bt in tail.batches(timeout=0.5) for m in bt]
    assert _bodies(got) == [b"a1", b"a2"]


def test_tail_iteration_and_close(hub, device):
    """Iterating a tail yields messages; close() ends the iteration."""
    tail = hub.events.tail()
    publish_many(hub, device, [b"x", b"y"])
    seen = []
    for m in tail:
        seen.append(m.body)
        if len(seen) == 2:
            tail.close()
    assert seen == [b"x", b"y"]
    assert tail.get(timeout=0.1) == []


def test_asyncio_tail(hub, device):
    """`async for` over a tail receives messages published while the event loop waits, within a timeout."""

    async def main():
        tail = hub.events.tail()
        loop = asyncio.get_running_loop()
        pub = loop.run_in_executor(None, lambda: (time.sleep(0.2), publish_many(hub, device, [b"as-1", b"as-2", b"as-3"])))
        got = []

        async def consume():
            async for m in tail:
                got.append(m.body)
                if len(got) == 3:
                    tail.close()
                    return

        await asyncio.wait_for(consume(), timeout=10)
        await asyncio.wait_for(pub, timeout=10)
        return got

    assert asyncio.run(main()) == [b"as-1", b"as-2", b"as-3"]


def test_asyncio_get_async(hub, device):
    """await tail.get_async(timeout) returns new messages, or [] after the timeout."""

    async def main():
        tail = hub.events.tail()
        empty = await tail.get_async(0.2)
        await asyncio.get_running_loop().run_in_executor(None, publish_many, hub, device, [b"g"])
        got = await asyncio.wait_for(tail.get_async(5), timeout=10)
        return empty, got

    empty, got = asyncio.run(main())
    assert empty == []
    assert _bodies(got) == [b"g"]


def test_events_survive_restart_and_sequence_continues(hub_factory, data_dir):
    """Messages survive closing and reopening the hub; new messages get the next sequence numbers."""
    h = hub_factory(data_dir)
    d = h.devices.create("dev1")
    publish_many(h, d, [b"before-%d" % i for i in range(10)])
    before = list(h.events.read())
    h.close()
    h2 = hub_factory(data_dir)
    assert [(m.sequence_number, m.body) for m in h2.events.read()] == [(m.sequence_number, m.body) for m in before]
    publish_many(h2, d, [b"after"])
    after = list(h2.events.read())
    assert after[-1].body == b"after"
    # Between them only the device's connection-state events (disconnect, connect) may sit.
    gap = after[-1].sequence_number - before[-1].sequence_number
    assert 1 <= gap <= 3
    between = list(h2.events.read(partition=after[-1].partition, offset=before[-1].sequence_number + 1, source=None))
    assert [m.source for m in between[:-1]] == ["deviceConnectionStateEvents"] * (gap - 1)
    assert after[-1].system_properties["iothub-connection-auth-generation-id"] == d.generation_id


def test_relaxed_durability(hub_factory, data_dir):
    """durability="relaxed" acknowledges and stores telemetry, and a clean close keeps it."""
    h = hub_factory(data_dir, durability="relaxed", mqtt_port=None)
    d = h.devices.create("dev1")
    publish_many(h, d, [b"r%d" % i for i in range(200)])
    assert len(list(h.events.read())) == 200
    h.close()
    h2 = hub_factory(data_dir, durability="relaxed", mqtt_port=None, start=False)
    assert _bodies(h2.events.read()) == [b"r%d" % i for i in range(200)]


def test_single_partition_hub(hub_factory, tmp_path):
    """A 1-partition hub puts every device in partition 0."""
    h = hub_factory(tmp_path / "p1", partitions=1, mqtt_port=None)
    assert h.events.partition_count == 1
    for i in range(3):
        publish_many(h, h.devices.create(f"d{i}"), [b"x"])
    assert {m.partition for m in h.events.read()} == {0}
    seqs = [m.sequence_number for m in h.events.read(partition=0)]
    assert len(seqs) == 3 and seqs == sorted(seqs)
    everything = [m.sequence_number for m in h.events.read(partition=0, source=None)]
    assert everything == list(range(len(everything)))
