"""The hub's structured log records reach Python's ``logging`` on the ``fleethub`` logger tree."""

from __future__ import annotations

import logging
import socket

from conftest import (
    DISCONNECT_PACKET,
    RC_BAD_CREDENTIALS,
    RC_NOT_AUTHORIZED,
    RawMqtt,
    RecordCollector,
    raw_device,
    sas_for,
    telemetry_topic,
    publish_packet,
    username_for,
    wait_until,
)


def test_connect_and_disconnect_are_logged(hub, device, fleethub_records):
    """A connection and its graceful disconnection appear as INFO records on fleethub.mqtt with fields."""
    c, _ = raw_device(hub, device, keepalive=30)
    recs = fleethub_records.wait_for("connected", client_id="dev1")
    assert recs, "no 'connected' record"
    r = recs[0]
    assert r.name == "fleethub.mqtt"
    assert r.levelno == logging.INFO
    f = r.fleethub_fields
    assert f["transport"] == "mqtt" and f["clean_session"] == "0" and f["keep_alive"] == "30"
    assert f["remote"].startswith("127.0.0.1:")
    assert "dev1" in r.getMessage()

    c.send(DISCONNECT_PACKET)
    assert c.wait_closed(5)
    c.close()
    recs = fleethub_records.wait_for("disconnected", client_id="dev1")
    assert recs, "no 'disconnected' record"
    assert recs[0].fleethub_fields["graceful"] == "1"
    assert recs[0].levelno == logging.INFO


def test_abrupt_disconnect_is_logged(hub, device, fleethub_records):
    """A connection dropped without DISCONNECT is logged as a non-graceful disconnection."""
    c, _ = raw_device(hub, device, clean_session=True)
    c.close()
    recs = fleethub_records.wait_for("disconnected", client_id="dev1")
    assert recs and recs[0].fleethub_fields["graceful"] == "0"


def test_refused_authentication_is_logged(hub, device, fleethub_records):
    """Refused authentications are WARNING records carrying the CONNACK code and a reason."""
    c = RawMqtt(hub.ports["mqtt"])
    try:
        rc, _ = c.mqtt_connect("dev1", username_for(hub.hostname, "dev1"),
                               sas_for(hub.hostname, "dev1", hub.devices.create("x").primary_key))
        assert rc == RC_NOT_AUTHORIZED
    finally:
        c.close()
    c = RawMqtt(hub.ports["mqtt"])
    try:
        rc, _ = c.mqtt_connect("dev1", "garbage", "garbage")
        assert rc == RC_BAD_CREDENTIALS
    finally:
        c.close()
    assert wait_until(lambda: len(fleethub_records.find("auth_refused", client_id="dev1")) >= 2, 5)
    recs = fleethub_records.find("auth_refused", client_id="dev1")
    assert {r.fleethub_fields["connack"] for r in recs} == {"5", "4"}
    assert all(r.levelno == logging.WARNING and r.name == "fleethub.mqtt" for r in recs)
    assert all(r.getMessage() for r in recs)
    assert not fleethub_records.find("connected", client_id="dev1")


def test_forbidden_publish_is_logged(hub, device, fleethub_records):
    """A publish to a foreign topic is logged as publish_refused (WARNING)."""
    c, _ = raw_device(hub, device, clean_session=True)
    try:
        c.send(publish_packet(telemetry_topic("someone-else"), b"x", qos=1, packet_id=1))
        assert c.wait_closed(5)
    finally:
        c.close()
    recs = fleethub_records.wait_for("publish_refused", client_id="dev1")
    assert recs and recs[0].levelno == logging.WARNING


def test_start_and_stop_are_logged(hub_factory, tmp_path, fleethub_records):
    """Starting and stopping a hub log 'started' (with its ports) and 'stopped' on fleethub.hub."""
    h = hub_factory(tmp_path / "h", mqtt_port=None, mqtt_plain_port=0)
    recs = fleethub_records.wait_for("started")
    assert recs and recs[-1].name == "fleethub.hub"
    assert recs[-1].fleethub_fields["mqtt"] == str(h.ports["mqtt"])
    assert recs[-1].fleethub_fields["mqtts"] == "off"
    h.stop()
    assert fleethub_records.wait_for("stopped")


def test_custom_logger_and_level(tmp_path, hub_factory):
    """logger= routes records to another logger tree; log_level="warning" drops INFO records in the core."""
    base = logging.getLogger("myapp.iot")
    col = RecordCollector()
    base.addHandler(col)
    base.setLevel(logging.DEBUG)
    try:
        h = hub_factory(tmp_path / "h", mqtt_port=None, mqtt_plain_port=0, logger=base, log_level="warning")
        dev = h.devices.create("d1")
        c, _ = raw_device(h, dev, clean_session=True)
        c.close()
        bad = RawMqtt(h.ports["mqtt"])
        try:
            assert bad.mqtt_connect("d1", username_for("localhost", "d1"), "not a token")[0] == RC_BAD_CREDENTIALS
        finally:
            bad.close()
        recs = col.wait_for("auth_refused", client_id="d1")
        assert recs and recs[0].name == "myapp.iot.mqtt"
        assert not col.find("connected")  # INFO, below the hub's level
        assert not col.find("started")
    finally:
        base.removeHandler(col)


def test_connection_state_follows_connections(hub, device, fleethub_records):
    """The registry's connection_state and connected count follow the log's connect/disconnect events."""
    c, _ = raw_device(hub, device)
    try:
        assert fleethub_records.wait_for("connected", client_id="dev1")
        d = hub.devices.get("dev1")
        assert d.connection_state == "Connected"
        assert d.connection_state_updated_ms > 0
    finally:
        c.close()
    assert fleethub_records.wait_for("disconnected", client_id="dev1")
    assert wait_until(lambda: hub.devices.get("dev1").connection_state == "Disconnected", 5)


def test_stop_and_restart_do_not_spin_the_acceptor(hub_factory, tmp_path, fleethub_records):
    """Stopping closes the listeners cleanly (no 'accept_failed' records), and a restarted hub accepts again."""
    h = hub_factory(tmp_path / "d", mqtt_port=0, mqtt_plain_port=0)
    for _ in range(3):
        h.start()
        h.stop()
    h.start()
    assert fleethub_records.wait_for("started")
    with socket.create_connection(("127.0.0.1", h.ports["mqtt"]), timeout=5):
        pass
    h.stop()
    assert fleethub_records.wait_for("stopped")
    assert not fleethub_records.find("accept_failed")
