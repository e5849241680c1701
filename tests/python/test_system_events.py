"""System events (TwinChangeEvents, DeviceConnectionStateEvents, DeviceLifecycleEvents) in the event log,
and the Python handlers that follow them."""

from __future__ import annotations

import json
import threading

import pytest

import fleethub
from conftest import publish_many, raw_device, wait_until


def _by_source(hub, source, device_id=None):
    return list(hub.events.read(source=source, device_id=device_id))


def test_lifecycle_events_for_devices_and_modules(hub):
    hub.devices.create("life1")
    hub.devices.create_module("life1", "m1")
    hub.twins.update("life1", tags={"t": 1})
    hub.devices.delete("life1")
    evs = _by_source(hub, "DeviceLifecycleEvents", "life1")
    assert [(e.module_id, e.properties["opType"]) for e in evs] == [
        (None, "createDeviceIdentity"), ("m1", "createDeviceIdentity"),
        ("m1", "deleteDeviceIdentity"), (None, "deleteDeviceIdentity")]  # modules go with their device
    create, mod, _, delete = evs
    assert create.source == "deviceLifecycleEvents"
    sp = create.system_properties
    assert sp["iothub-message-source"] == "deviceLifecycleEvents"
    assert sp["content-type"] == "application/json" and sp["content-encoding"] == "utf-8"
    assert sp["user-id"] == "localhost" and sp["iothub-connection-device-id"] == "life1"
    assert sp["correlation-id"]
    assert create.properties["iothub-message-schema"] == "deviceLifecycleNotification"
    assert create.properties["hubName"] == "localhost" and create.properties["deviceId"] == "life1"
    assert create.properties["operationTimestamp"].endswith("Z")
    body = create.json()
    assert body["deviceId"] == "life1" and body["properties"]["desired"]["$version"] == 1
    assert mod.properties["moduleId"] == "m1" and mod.system_properties["iothub-connection-module-id"] == "m1"
    assert mod.json()["moduleId"] == "m1"
    assert delete.json()["tags"] == {"t": 1}  # the twin as it was


def test_connection_state_events(hub, device):
    c, _ = raw_device(hub, device)
    c.close()
    assert wait_until(lambda: len(_by_source(hub, "DeviceConnectionStateEvents", device.device_id)) == 2)
    c, _ = raw_device(hub, device)
    c.close()
    assert wait_until(lambda: len(_by_source(hub, "DeviceConnectionStateEvents", device.device_id)) == 4)
    evs = _by_source(hub, "DeviceConnectionStateEvents", device.device_id)
    assert [e.properties["opType"] for e in evs] == ["deviceConnected", "deviceDisconnected"] * 2
    seqs = [e.json()["sequenceNumber"] for e in evs]
    assert all(len(s) == 64 and int(s, 16) >= 0 for s in seqs)
    assert seqs == sorted(seqs) and len(set(seqs)) == 4
    assert evs[0].properties["iothub-message-schema"] == "deviceConnectionStateNotification"
    assert evs[0].system_properties["iothub-message-source"] == "deviceConnectionStateEvents"
    # telemetry readers do not see them
    assert _by_source(hub, "DeviceMessages", device.device_id) == []


def test_twin_change_events_update_and_replace(hub, device):
    hub.twins.update(device.device_id, tags={"a": 1}, desired={"d": {"x": 1}})
    hub.twins.replace(device.device_id, desired={"n": 2})
    evs = _by_source(hub, "TwinChangeEvents")
    assert [e.properties["opType"] for e in evs] == ["updateTwin", "replaceTwin"]
    upd = evs[0].json()
    assert upd["tags"] == {"a": 1}
    des = upd["properties"]["desired"]
    assert des["d"] == {"x": 1} and des["$version"] == 2
    assert des["$metadata"]["d"]["x"]["$lastUpdatedVersion"] == 2
    rep = evs[1].json()
    assert rep["deviceId"] == device.device_id and rep["properties"]["desired"]["n"] == 2
    assert rep["tags"] == {}
    assert evs[0].properties["iothub-message-schema"] == "twinChangeNotification"


def test_read_and_tail_by_source(hub, device):
    tail = hub.events.tail(source=["TwinChangeEvents", "DeviceConnectionStateEvents"])
    publish_many(hub, device, [b"t1"])  # connect, telemetry, disconnect
    hub.twins.update(device.device_id, desired={"a": 1})
    got = []
    assert wait_until(lambda: got.extend(tail.get(timeout=0.2)) or len(got) >= 3)
    assert {m.source for m in got} == {"deviceConnectionStateEvents", "twinChangeEvents"}
    assert all(m.body != b"t1" for m in got)
    everything = list(hub.events.read(source=None, device_id=device.device_id))
    assert {m.source for m in everything} == {"Telemetry", "deviceLifecycleEvents", "deviceConnectionStateEvents",
                                              "twinChangeEvents"}
    assert [m.body for m in hub.events.read(device_id=device.device_id)] == [b"t1"]
    with pytest.raises(fleethub.InvalidArgumentError, match="unknown source"):
        list(hub.events.read(source="Bogus"))


def test_handlers_run_and_a_raising_handler_is_counted(hub, device, caplog):
    twin_events, conn_events, life_events = [], [], []
    done = threading.Event()

    @hub.on_twin_change
    def on_twin(ev: fleethub.TwinChangeEvent) -> None:
        twin_events.append(ev)
        if ev.desired and ev.desired.get("boom"):
            raise RuntimeError("handler bug")
        if ev.desired and ev.desired.get("last"):
            done.set()

    @hub.on_connection_state
    def on_conn(ev: fleethub.ConnectionStateEvent) -> None:
        conn_events.append(ev)

    @hub.on_device_lifecycle
    def on_life(ev: fleethub.LifecycleEvent) -> None:
        life_events.append(ev)

    c, _ = raw_device(hub, device)
    hub.twins.update(device.device_id, desired={"boom": True})
    hub.twins.update(device.device_id, desired={"ok": 1})
    c.close()
    hub.devices.create("late")
    hub.twins.update(device.device_id, desired={"last": True})
    assert done.wait(10)
    assert wait_until(lambda: len(conn_events) == 2 and len(life_events) == 1)
    assert [ev.version for ev in twin_events] == sorted(ev.version for ev in twin_events)
    assert len(twin_events) == 3 and twin_events[1].desired["ok"] == 1
    assert twin_events[0].op_type == "updateTwin" and twin_events[0].device_id == device.device_id
    assert [ev.connected for ev in conn_events] == [True, False]
    assert conn_events[0].sequence_number < conn_events[1].sequence_number
    assert life_events[0].device_id == "late" and life_events[0].created
    assert life_events[0].twin["deviceId"] == "late"
    assert hub.handler_errors == 1
    raised = [r for r in caplog.records if r.name == "fleethub.handlers" and r.exc_info]
    assert len(raised) == 1 and "handler bug" in str(raised[0].exc_info[1])
    assert hub.running


def test_reported_patch_reaches_twin_handler(hub, device):
    seen = []
    hub.on_twin_change(seen.append)
    c, _ = raw_device(hub, device)
    from conftest import publish_packet
    c.subscribe(1, [("$iothub/twin/res/#", 0)])
    c.send(publish_packet("$iothub/twin/PATCH/properties/reported/?$rid=1", json.dumps({"fw": "2.0"}).encode()))
    assert wait_until(lambda: len(seen) == 1)
    assert seen[0].reported["fw"] == "2.0" and seen[0].reported["$version"] == 2
    c.close()
