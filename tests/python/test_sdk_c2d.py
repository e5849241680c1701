"""Cloud-to-device messages with the unmodified Azure IoT device SDK (azure-iot-device) on port 8883."""

from __future__ import annotations

import queue
import time
import uuid

import pytest

pytest.importorskip("azure.iot.device")

from azure.iot.device import IoTHubDeviceClient  # noqa: E402

import fleethub  # noqa: E402

pytestmark = [pytest.mark.sdk, pytest.mark.timeout(120)]


def _client(hub, dev, **kw):
    kw.setdefault("connection_retry", False)
    return IoTHubDeviceClient.create_from_connection_string(dev.connection_string, server_verification_cert=hub.ca_cert,
                                                            **kw)


def _drain_feedback(hub, n, timeout=10.0):
    recs = []
    end = time.monotonic() + timeout
    while len(recs) < n and time.monotonic() < end:
        b = hub.c2d.receive_feedback(0.5)
        if b:
            recs.extend(b.records)
            b.complete()
    return recs


@pytest.fixture(scope="module")
def c2d_hub(tmp_path_factory):
    d = tmp_path_factory.mktemp("c2dhub")
    h = fleethub.Hub(d, hostname="localhost", mqtt_port=8883, https_port=None, c2d_feedback_interval=0.2, log_level="warning")
    h.start()
    yield h
    h.close()


def test_sdk_receives_messages_with_properties_and_positive_feedback(c2d_hub):
    hub = c2d_hub
    dev = hub.devices.create(f"c2d-{uuid.uuid4().hex[:8]}")
    got: "queue.Queue" = queue.Queue()
    client = _client(hub, dev)
    client.on_message_received = got.put
    try:
        client.connect()
        time.sleep(0.3)  # the SDK subscribes when the handler is set
        infos = []
        for i in range(20):
            infos.append(hub.c2d.send(dev.device_id, f'{{"n":{i}}}'.encode(), message_id=f"mid-{i}",
                                      correlation_id=f"cid-{i}", content_type="application/json",
                                      content_encoding="utf-8", properties={"idx": str(i), "with space": "a&b=c/d"},
                                      ack="positive"))
        msgs = [got.get(timeout=10) for _ in range(20)]
    finally:
        client.shutdown()
    assert [m.data for m in msgs] == [f'{{"n":{i}}}'.encode() for i in range(20)]  # in order
    for i, m in enumerate(msgs):
        assert m.message_id == f"mid-{i}" and m.correlation_id == f"cid-{i}"
        assert m.content_type == "application/json" and m.content_encoding == "utf-8"
        assert m.custom_properties == {"idx": str(i), "with space": "a&b=c/d"}
        assert m.ack == "positive"
        assert m.expiry_time_utc  # $.exp is sent
    assert [x.sequence_number for x in infos] == sorted(x.sequence_number for x in infos)
    recs = _drain_feedback(hub, 20)
    assert sorted(r.original_message_id for r in recs) == sorted(f"mid-{i}" for i in range(20))
    assert {r.status_code for r in recs} == {"Success"}
    assert {r.device_id for r in recs} == {dev.device_id}
    assert {r.device_generation_id for r in recs} == {dev.generation_id}
    assert hub.c2d.depth(dev.device_id) == 0


def test_sdk_offline_device_gets_its_queue_after_reconnecting(c2d_hub):
    hub = c2d_hub
    dev = hub.devices.create(f"c2do-{uuid.uuid4().hex[:8]}")
    got: "queue.Queue" = queue.Queue()
    client = _client(hub, dev)
    client.on_message_received = got.put
    try:
        client.connect()
        time.sleep(0.3)
        client.disconnect()
        for i in range(5):
            hub.c2d.send(dev.device_id, f"offline-{i}")
        assert hub.c2d.depth(dev.device_id) == 5
        assert got.empty()
        client.connect()  # the persistent session still has the subscription
        msgs = [got.get(timeout=10).data for _ in range(5)]
    finally:
        client.shutdown()
    assert msgs == [f"offline-{i}".encode() for i in range(5)]
    assert hub.twins.get(dev.device_id).to_dict()["cloudToDeviceMessageCount"] == 0


def test_queue_full_and_expired_feedback(c2d_hub):
    hub = c2d_hub
    dev = hub.devices.create(f"c2df-{uuid.uuid4().hex[:8]}")
    for i in range(50):
        hub.c2d.send(dev.device_id, b"x", message_id=f"q{i}", expiry=1.0 if i < 3 else None, ack="negative")
    with pytest.raises(fleethub.QueueFullError, match="403004"):
        hub.c2d.send(dev.device_id, b"one too many")
    assert hub.twins.get(dev.device_id).to_dict()["cloudToDeviceMessageCount"] == 50
    recs = _drain_feedback(hub, 3)
    assert sorted(r.original_message_id for r in recs) == ["q0", "q1", "q2"]
    assert {r.status_code for r in recs} == {"Expired"} and {r.description for r in recs} == {"Expired"}
    assert hub.c2d.depth(dev.device_id) == 47
    hub.c2d.send(dev.device_id, b"room again")
    assert hub.c2d.purge(dev.device_id) == 48
    recs = _drain_feedback(hub, 47)
    assert len(recs) == 47 and {r.status_code for r in recs} == {"Purged"}
