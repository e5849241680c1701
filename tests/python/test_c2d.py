"""Cloud-to-device queues over raw MQTT and through the Python API."""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from urllib.parse import unquote

import pytest

import fleethub
from conftest import PUBLISH, RawMqtt, puback_packet, raw_device, wait_until


def _filter(dev):
    return f"devices/{dev.device_id}/messages/devicebound/#"


def _next_c2d(c: RawMqtt, timeout=5.0):
    p = c.read_packet(timeout=timeout)
    assert p.type == PUBLISH, p.type
    topic, pid, body = p.publish_parts()
    return p, topic, pid, body


def _bag(topic, dev):
    prefix = f"devices/{dev.device_id}/messages/devicebound/"
    assert topic.startswith(prefix)
    out = {}
    for kv in topic[len(prefix):].split("&"):
        if kv:
            k, _, v = kv.partition("=")
            out[k] = v
    return out


@pytest.fixture
def c2d_hub(hub_factory, data_dir):
    return hub_factory(data_dir, mqtt_port=None, mqtt_plain_port=0, c2d_feedback_interval=0.1)


def test_delivery_topic_and_properties_as_csdk_expects(c2d_hub):
    hub = c2d_hub
    dev = hub.devices.create("dev1")
    c, _ = raw_device(hub, dev)
    assert c.subscribe(1, [(_filter(dev), 1)]) == [1]
    with pytest.raises(fleethub.InvalidArgumentError, match="message id"):
        hub.c2d.send("dev1", b"x", message_id="has space")  # IoT Hub's message-id character rules
    hub.c2d.send("dev1", b"hello", message_id="m:1", correlation_id="c/1", content_type="text/plain",
                 properties={"k": "v&w"}, ack="full")
    p, topic, pid, body = _next_c2d(c)
    assert p.qos == 1 and pid and body == b"hello"
    bag = _bag(topic, dev)
    # system keys in the %24. form (csdk compares raw bytes), values percent-encoded
    assert bag["%24.mid"] == "m%3A1" and bag["%24.cid"] == "c%2F1" and bag["%24.ct"] == "text%2Fplain"
    assert bag["%24.to"] == "%2Fdevices%2Fdev1%2Fmessages%2Fdevicebound"
    assert unquote(bag["%24.exp"]).endswith("Z")
    assert bag["k"] == "v%26w" and bag["iothub-ack"] == "full"
    c.send(puback_packet(pid))
    assert wait_until(lambda: hub.c2d.depth("dev1") == 0)


def test_in_order_window_and_puback_completes(hub_factory, data_dir):
    hub = hub_factory(data_dir, mqtt_port=None, mqtt_plain_port=0, c2d_max_queue_depth=200)
    dev = hub.devices.create("dev1")
    for i in range(150):
        hub.c2d.send("dev1", b"%d" % i)
    c, _ = raw_device(hub, dev)
    c.subscribe(1, [(_filter(dev), 1)])
    got, pids = [], []
    # the hub keeps at most 100 unacknowledged
    for _ in range(100):
        _, _, pid, body = _next_c2d(c)
        got.append(int(body))
        pids.append(pid)
    with pytest.raises(Exception):
        _next_c2d(c, timeout=0.5)
    for pid in pids:
        c.send(puback_packet(pid))
    for _ in range(50):
        _, _, pid, body = _next_c2d(c)
        got.append(int(body))
        c.send(puback_packet(pid))
    assert got == list(range(150))
    assert wait_until(lambda: hub.c2d.depth("dev1") == 0)


def test_unacknowledged_messages_are_redelivered_on_the_next_connection(c2d_hub):
    hub = c2d_hub
    dev = hub.devices.create("dev1")
    c, _ = raw_device(hub, dev)
    c.subscribe(1, [(_filter(dev), 1)])
    hub.c2d.send("dev1", b"a")
    hub.c2d.send("dev1", b"b")
    _, _, pid_a, _ = _next_c2d(c)
    _, _, pid_b, _ = _next_c2d(c)
    c.send(puback_packet(pid_a))
    assert wait_until(lambda: hub.c2d.depth("dev1") == 1)
    c.close()  # b was never acknowledged
    c2, sp = raw_device(hub, dev)
    assert sp == 1
    _, _, pid, body = _next_c2d(c2)
    assert body == b"b"
    c2.send(puback_packet(pid))
    assert wait_until(lambda: hub.c2d.depth("dev1") == 0)


def test_qos0_subscription_gets_at_most_once(c2d_hub):
    hub = c2d_hub
    dev = hub.devices.create("dev1")
    c, _ = raw_device(hub, dev, clean_session=True)
    assert c.subscribe(1, [(_filter(dev), 0)]) == [0]
    hub.c2d.send("dev1", b"q0", ack="positive")
    p, _, pid, body = _next_c2d(c)
    assert p.qos == 0 and pid is None and body == b"q0"
    assert wait_until(lambda: hub.c2d.depth("dev1") == 0)
    b = hub.c2d.receive_feedback(5)
    assert b and [r.status_code for r in b.records] == ["Success"]
    b.complete()


def test_no_delivery_without_subscription_and_none_to_modules(c2d_hub):
    hub = c2d_hub
    dev = hub.devices.create("dev1")
    c, _ = raw_device(hub, dev)
    hub.c2d.send("dev1", b"wait")
    assert c.is_open_after(0.3)
    with pytest.raises(Exception):
        _next_c2d(c, timeout=0.3)
    c.subscribe(1, [(_filter(dev), 1)])
    _, _, pid, body = _next_c2d(c)
    assert body == b"wait"


def test_send_rules(c2d_hub):
    hub = c2d_hub
    hub.devices.create("dev1")
    hub.devices.create("off", enabled=False)
    with pytest.raises(fleethub.DeviceNotFoundError):
        hub.c2d.send("ghost", b"x")
    with pytest.raises(fleethub.DeviceNotFoundError, match="disabled"):
        hub.c2d.send("off", b"x")
    with pytest.raises(fleethub.TooLargeError, match="65536"):
        hub.c2d.send("dev1", b"x" * (64 * 1024 + 1))
    with pytest.raises(fleethub.InvalidArgumentError, match="403009"):
        hub.c2d.send("dev1", b"x", expiry=dt.timedelta(hours=49))
    with pytest.raises(fleethub.InvalidArgumentError):
        hub.c2d.send("dev1", b"x", expiry=dt.datetime(2020, 1, 1, tzinfo=dt.timezone.utc))
    with pytest.raises(fleethub.InvalidArgumentError):
        hub.c2d.send("dev1", b"x", ack="sometimes")
    info = hub.c2d.send("dev1", {"json": True})
    assert len(info.message_id) == 36
    assert dt.timedelta(minutes=59) < info.expiry_time - dt.datetime.now(dt.timezone.utc) <= dt.timedelta(hours=1)
    assert hub.c2d.depth("dev1") == 1
    with pytest.raises(fleethub.DeviceNotFoundError):
        hub.c2d.purge("ghost")


def test_queue_depth_configurable(hub_factory, data_dir):
    hub = hub_factory(data_dir, mqtt_port=None, mqtt_plain_port=0, c2d_max_queue_depth=3)
    hub.devices.create("d")
    for i in range(3):
        hub.c2d.send("d", b"x")
    with pytest.raises(fleethub.QueueFullError):
        hub.c2d.send("d", b"x")
    with pytest.raises(fleethub.InvalidArgumentError):
        hub_factory(data_dir / "other", c2d_max_queue_depth=0)


def test_send_async_and_feedback_async(c2d_hub):
    hub = c2d_hub
    dev = hub.devices.create("dev1")

    async def go():
        infos = await asyncio.gather(*(hub.c2d.send_async("dev1", b"%d" % i, ack="full", message_id=f"a{i}")
                                       for i in range(30)))
        with pytest.raises(fleethub.DeviceNotFoundError):
            await hub.c2d.send_async("ghost", b"x")
        return infos

    infos = asyncio.run(go())
    assert len({i.sequence_number for i in infos}) == 30
    c, _ = raw_device(hub, dev)
    c.subscribe(1, [(_filter(dev), 1)])
    for _ in range(30):
        _, _, pid, _ = _next_c2d(c)
        c.send(puback_packet(pid))

    async def collect():
        recs = []
        async for batch in hub.c2d.feedback_async(timeout=5):
            recs.extend(batch.records)
            batch.complete()
            if len(recs) >= 30:
                break
        return recs

    recs = asyncio.run(collect())
    assert sorted(r.original_message_id for r in recs) == sorted(f"a{i}" for i in range(30))


def test_feedback_abandon_redelivers_and_lock_lost(c2d_hub):
    hub = c2d_hub
    hub.devices.create("dev1")
    hub.c2d.send("dev1", b"x", message_id="gone", ack="negative")
    hub.c2d.purge("dev1")
    b = hub.c2d.receive_feedback(5)
    assert b is not None and b.delivery_count == 0
    assert hub.c2d.receive_feedback(0.2) is None  # locked: not handed out twice
    b.abandon()
    b2 = hub.c2d.receive_feedback(5)
    assert b2 is not None and b2.delivery_count == 1 and b2.records == b.records
    with pytest.raises(fleethub.PreconditionFailedError, match="412002"):
        b.complete()  # the old lock
    b2.complete()
    assert hub.c2d.receive_feedback(0.2) is None


def test_feedback_batches_up_to_64_records(c2d_hub):
    hub = c2d_hub
    devs = [hub.devices.create(f"d{i}") for i in range(2)]
    for d in devs:
        for i in range(40):
            hub.c2d.send(d.device_id, b"x", ack="negative")
    for d in devs:
        hub.c2d.purge(d.device_id)
    sizes = []
    while sum(sizes) < 80:
        b = hub.c2d.receive_feedback(5)
        assert b is not None
        sizes.append(len(b))
        assert b.content_type == "application/vnd.microsoft.iothub.feedback.json"
        b.complete()
    assert max(sizes) == 64 and sum(sizes) == 80


def test_queue_and_feedback_survive_restart_and_device_delete_drops_queue(hub_factory, data_dir):
    h = hub_factory(data_dir, mqtt_port=None, mqtt_plain_port=0, c2d_feedback_interval=0.1)
    h.devices.create("keep")
    h.devices.create("drop")
    for i in range(5):
        h.c2d.send("keep", b"%d" % i, message_id=f"k{i}")
        h.c2d.send("drop", b"%d" % i)
    h.c2d.send("keep", b"p", ack="negative", message_id="purged-one")
    h.close()
    h = hub_factory(data_dir, mqtt_port=None, mqtt_plain_port=0, c2d_feedback_interval=0.1)
    assert h.c2d.depth("keep") == 6 and h.c2d.depth("drop") == 5
    h.devices.delete("drop")
    assert h.c2d.depth("drop") == 0
    h.devices.create("drop")
    assert h.c2d.depth("drop") == 0
    dev = h.devices.get("keep")
    c, _ = raw_device(h, dev)
    c.subscribe(1, [(_filter(dev), 1)])
    bodies = []
    for _ in range(6):
        _, _, pid, body = _next_c2d(c)
        bodies.append(body)
        c.send(puback_packet(pid))
    assert bodies == [b"0", b"1", b"2", b"3", b"4", b"p"]


def test_send_batch_one_commit_per_call_with_per_message_results(hub_factory, data_dir):
    hub = hub_factory(data_dir, mqtt_port=None, mqtt_plain_port=0, c2d_max_queue_depth=2)
    for i in range(3):
        hub.devices.create(f"d{i}")
    res = hub.c2d.send_batch([("d0", b"a"), ("d0", b"b", {"k": "v"}), ("d0", b"c"),
                              {"device_id": "d1", "body": {"x": 1}, "message_id": "given"}, ("ghost", b"x"),
                              ("d2", b"y" * (64 * 1024 + 1))], ack="positive")
    assert isinstance(res[0], fleethub.C2DMessageInfo) and isinstance(res[1], fleethub.C2DMessageInfo)
    assert isinstance(res[2], fleethub.QueueFullError)
    assert res[3].message_id == "given"
    assert isinstance(res[4], fleethub.DeviceNotFoundError)
    assert isinstance(res[5], fleethub.TooLargeError)
    assert res[0].sequence_number < res[1].sequence_number < res[3].sequence_number
    assert [hub.c2d.depth(f"d{i}") for i in range(3)] == [2, 1, 0]
    more = asyncio.run(hub.c2d.send_batch_async([("d2", b"z"), ("d2", b"w")]))
    assert all(isinstance(m, fleethub.C2DMessageInfo) for m in more) and hub.c2d.depth("d2") == 2
    dev = hub.devices.get("d0")
    c, _ = raw_device(hub, dev)
    c.subscribe(1, [(_filter(dev), 1)])
    got = []
    for _ in range(2):
        p, topic, pid, body = _next_c2d(c)
        got.append((body, _bag(topic, dev).get("k")))
        c.send(puback_packet(pid))
    assert got == [(b"a", None), (b"b", "v")]
