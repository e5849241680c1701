"""MQTT 3.1.1 behaviour of the hub as Azure IoT Hub defines it: authentication, telemetry, sessions, limits."""

from __future__ import annotations

import json
import socket
import ssl
import time

import pytest

import fleethub
from conftest import (
    CONNACK,
    DISCONNECT_PACKET,
    PUBACK,
    PUBLISH,
    RC_ACCEPTED,
    RC_BAD_CREDENTIALS,
    RC_BAD_PROTOCOL,
    RC_ID_REJECTED,
    RC_NOT_AUTHORIZED,
    UNSUBACK,
    ConnectionClosed,
    RawMqtt,
    connect_packet,
    devicebound_filter,
    puback_packet,
    publish_packet,
    raw_device,
    sas_for,
    telemetry_topic,
    unsubscribe_packet,
    username_for,
    wait_until,
)


def _count(hub) -> int:
    return sum(1 for _ in hub.events.read())  # telemetry only (system events share the log)


def _raw_connack(hub, client_id, username, password, **kw):
    c = RawMqtt(hub.ports["mqtt"])
    try:
        rc, sp = c.mqtt_connect(client_id, username, password, **kw)
        closed = c.wait_closed(5) if rc != RC_ACCEPTED else None
        return rc, sp, closed
    finally:
        c.close()


# ---------------------------------------------------------------------------------------------------------
# CONNECT / CONNACK
# ---------------------------------------------------------------------------------------------------------
def test_connack_accepted_with_sas(hub, device, paho_clients):
    """A registered device with a valid SAS token is accepted (CONNACK 0, no session the first time)."""
    c = paho_clients(hub, device.device_id, device.primary_key)
    assert c.connect() == RC_ACCEPTED
    assert c.session_present == 0
    assert wait_until(lambda: hub.devices.get("dev1").connection_state == "Connected", 5)
    assert hub.devices.stats()["connected"] == 1
    c.disconnect()
    assert wait_until(lambda: hub.devices.get("dev1").connection_state == "Disconnected", 5)
    assert hub.devices.stats()["connected"] == 0


def test_connack_accepted_with_secondary_key(hub, device, paho_clients):
    """A token signed with the secondary key is accepted too."""
    c = paho_clients(hub, device.device_id, device.secondary_key)
    assert c.connect() == RC_ACCEPTED


def test_refused_unknown_device(hub, paho_clients):
    """A device that is not registered is refused with CONNACK 5 (not authorized)."""
    key = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="
    c = paho_clients(hub, "nobody", key)
    assert c.connect() == RC_NOT_AUTHORIZED


def test_refused_disabled_device(hub, paho_clients):
    """A disabled device is refused with CONNACK 5 and re-enabling it lets it in."""
    d = hub.devices.create("off", enabled=False)
    c = paho_clients(hub, "off", d.primary_key)
    assert c.connect() == RC_NOT_AUTHORIZED
    hub.devices.enable("off")
    c2 = paho_clients(hub, "off", d.primary_key)
    assert c2.connect() == RC_ACCEPTED


def test_refused_wrong_key(hub, device, paho_clients):
    """A SAS token signed with a key that is not the device's is refused with CONNACK 5."""
    other = hub.devices.create("other")
    c = paho_clients(hub, device.device_id, other.primary_key)
    assert c.connect() == RC_NOT_AUTHORIZED


def test_refused_expired_token(hub, device, paho_clients):
    """A SAS token whose expiry is in the past is refused with CONNACK 5."""
    tok = sas_for(hub.hostname, device.device_id, device.primary_key, expiry=int(time.time()) - 60)
    c = paho_clients(hub, device.device_id, None, password=tok)
    assert c.connect() == RC_NOT_AUTHORIZED


def test_refused_token_for_another_device(hub, device, paho_clients):
    """A token whose resource is another device (even signed with the right key) is refused with CONNACK 5."""
    tok = sas_for(hub.hostname, "other", device.primary_key)
    c = paho_clients(hub, device.device_id, None, password=tok)
    assert c.connect() == RC_NOT_AUTHORIZED


def test_refused_tampered_signature(hub, device, paho_clients):
    """A token whose expiry was edited after signing is refused with CONNACK 5."""
    exp = int(time.time()) + 100
    tok = sas_for(hub.hostname, device.device_id, device.primary_key, expiry=exp)
    forged = tok.replace(f"se={exp}", f"se={exp + 99999}")
    assert forged != tok
    c = paho_clients(hub, device.device_id, None, password=forged)
    assert c.connect() == RC_NOT_AUTHORIZED


def test_refused_malformed_username(hub, device, paho_clients):
    """A username that is not '{hostname}/{deviceId}/?api-version=..' is refused with CONNACK 4."""
    c = paho_clients(hub, device.device_id, device.primary_key, username="no-slashes-here")
    assert c.connect() == RC_BAD_CREDENTIALS


def test_refused_missing_username(hub, device):
    """A CONNECT without a username (and so without a password) is refused with CONNACK 4."""
    rc, sp, closed = _raw_connack(hub, device.device_id, None, None)
    assert (rc, sp) == (RC_BAD_CREDENTIALS, 0)
    assert closed


def test_refused_missing_password(hub, device):
    """A CONNECT with the IoT Hub username but no password (and no client certificate) is refused (CONNACK 5)."""
    rc, sp, closed = _raw_connack(hub, device.device_id, username_for(hub.hostname, device.device_id), None)
    assert rc == RC_NOT_AUTHORIZED
    assert closed


def test_refused_password_not_a_sas_token(hub, device, paho_clients):
    """A password that is not a SharedAccessSignature token is refused with CONNACK 4."""
    c = paho_clients(hub, device.device_id, None, password="hunter2")
    assert c.connect() == RC_BAD_CREDENTIALS


def test_refused_client_id_mismatch(hub, device, paho_clients):
    """A client id that differs from the username's device id is refused with CONNACK 2."""
    hub.devices.create("dev2")
    c = paho_clients(hub, device.device_id, device.primary_key, client_id="dev2")
    assert c.connect() == RC_ID_REJECTED


def test_refused_empty_client_id(hub, device):
    """An empty client id is refused with CONNACK 2."""
    rc, _, closed = _raw_connack(hub, "", username_for(hub.hostname, device.device_id),
                                 sas_for(hub.hostname, device.device_id, device.primary_key), clean_session=True)
    assert rc == RC_ID_REJECTED
    assert closed


@pytest.mark.parametrize("name,level", [("MQTT", 3), ("MQIsdp", 3), ("MQTT", 5)])
def test_refused_unsupported_protocol_level(hub, device, raw_clients, name, level):
    """A CONNECT for MQTT 3.1 (level 3) or MQTT 5 is answered with CONNACK 1 and the connection is closed."""
    c = raw_clients(hub.ports["mqtt"])
    c.send(connect_packet(device.device_id, username_for(hub.hostname, device.device_id),
                          sas_for(hub.hostname, device.device_id, device.primary_key),
                          level=level, protocol_name=name))
    p = c.expect(CONNACK)
    assert p.body == bytes([0, RC_BAD_PROTOCOL])
    assert c.wait_closed(5)


def test_refused_connection_is_closed_and_nothing_processed(hub, device, raw_clients):
    """After a refusal the hub closes the socket and ignores publishes pipelined behind the CONNECT."""
    c = raw_clients(hub.ports["mqtt"])
    c.send(connect_packet(device.device_id, username_for(hub.hostname, device.device_id), "nope")
           + publish_packet(telemetry_topic(device.device_id), b"sneaky", qos=1, packet_id=1))
    p = c.expect(CONNACK)
    assert p.body[1] == RC_BAD_CREDENTIALS
    assert c.wait_closed(5)
    assert _count(hub) == 0


def test_first_packet_must_be_connect(hub, device, raw_clients):
    """A connection whose first packet is not CONNECT is closed without a CONNACK."""
    c = raw_clients(hub.ports["mqtt"])
    c.send(publish_packet(telemetry_topic(device.device_id), b"x", qos=0))
    assert c.wait_closed(5)
    assert _count(hub) == 0


def test_second_connect_closes_connection(hub, device):
    """A second CONNECT on an established connection is a protocol violation: the hub closes it."""
    c, _ = raw_device(hub, device)
    try:
        c.send(connect_packet(device.device_id, username_for(hub.hostname, device.device_id),
                              sas_for(hub.hostname, device.device_id, device.primary_key)))
        assert c.wait_closed(5)
    finally:
        c.close()


# ---------------------------------------------------------------------------------------------------------
# Telemetry
# ---------------------------------------------------------------------------------------------------------
def test_qos1_every_publish_pubacked_in_order_and_stored(hub, device):
    """Every QoS 1 PUBLISH gets its PUBACK, in order, and every message is then readable from hub.events."""
    c, _ = raw_device(hub, device, clean_session=True)
    try:
        n = 300
        topic = telemetry_topic(device.device_id, "kind=test")
        for i in range(n):
            c.send(publish_packet(topic, json.dumps({"i": i}).encode(), qos=1, packet_id=i + 1))
        acks = [c.expect(PUBACK).packet_id for _ in range(n)]
        assert acks == list(range(1, n + 1))
    finally:
        c.close()
    msgs = list(hub.events.read(device_id=device.device_id))
    assert [m.json()["i"] for m in msgs] == list(range(n))
    assert all(m.properties == {"kind": "test"} for m in msgs)
    seqs = [m.sequence_number for m in msgs]
    assert seqs == sorted(seqs) and len(set(seqs)) == n


def test_paho_qos1_publishes_all_acknowledged(hub, device, paho_clients):
    """An unmodified paho client gets on_publish (PUBACK) for every QoS 1 message; all are stored."""
    c = paho_clients(hub, device.device_id, device.primary_key)
    assert c.connect() == RC_ACCEPTED
    mids = [c.publish(telemetry_topic(device.device_id), f"m{i}".encode(), qos=1).mid for i in range(200)]
    c.wait_acked(mids)
    assert sorted(m.body for m in hub.events.read()) == sorted(f"m{i}".encode() for i in range(200))


def test_properties_percent_encoded_system_keys(hub, device):
    """'%24.'-encoded system keys become system properties; other keys (percent-decoded) application properties."""
    bag = ("%24.mid=abc&%24.cid=corr-1&%24.ct=application%2Fjson&%24.ce=utf-8"
           "&key=value&sp%20ace=a%26b%3Dc&empty=&bare&unicode=%C3%A9t%C3%A9")
    c, _ = raw_device(hub, device, clean_session=True)
    try:
        c.send(publish_packet(telemetry_topic(device.device_id, bag), b'{"t": 21.5}', qos=1, packet_id=7))
        assert c.expect(PUBACK).packet_id == 7
    finally:
        c.close()
    (m,) = list(hub.events.read())
    sp = m.system_properties
    assert sp["message-id"] == "abc"
    assert sp["correlation-id"] == "corr-1"
    assert sp["content-type"] == "application/json"
    assert sp["content-encoding"] == "utf-8"
    assert (m.message_id, m.correlation_id, m.content_type, m.content_encoding) == (
        "abc", "corr-1", "application/json", "utf-8")
    assert m.properties == {"key": "value", "sp ace": "a&b=c", "empty": "", "bare": "", "unicode": "été"}
    assert m.json() == {"t": 21.5}
    assert m.device_id == "dev1"
    assert sp["iothub-connection-device-id"] == "dev1"
    auth = json.loads(sp["iothub-connection-auth-method"])
    assert auth["scope"] == "device" and auth["type"] == "sas"
    assert sp["iothub-connection-auth-generation-id"] == device.generation_id
    assert sp["iothub-enqueuedtime"].endswith("Z")
    assert m.partition == fleethub.partition_for("dev1", hub.events.partition_count)


def test_properties_raw_csdk_style(hub, device):
    """Raw '$.' keys and unencoded values (as some C SDK builds send) are understood too."""
    bag = "$.mid=raw-1&$.ct=application/json&$.ce=utf-8&$.cid=c/2&path=a/b/c&x=1"
    c, _ = raw_device(hub, device, clean_session=True)
    try:
        c.send(publish_packet(telemetry_topic(device.device_id, bag), b"{}", qos=1, packet_id=1))
        c.expect(PUBACK)
    finally:
        c.close()
    (m,) = list(hub.events.read())
    assert m.message_id == "raw-1"
    assert m.content_type == "application/json"
    assert m.content_encoding == "utf-8"
    assert m.correlation_id == "c/2"
    assert m.properties == {"path": "a/b/c", "x": "1"}


def test_device_cannot_spoof_connection_device_id(hub, device):
    """A device cannot set iothub-connection-device-id through the property bag: the hub sets it."""
    bag = "%24.cdid=evil&iothub-connection-device-id=evil2"
    c, _ = raw_device(hub, device, clean_session=True)
    try:
        c.send(publish_packet(telemetry_topic(device.device_id, bag), b"x", qos=1, packet_id=1))
        c.expect(PUBACK)
    finally:
        c.close()
    (m,) = list(hub.events.read())
    assert m.system_properties["iothub-connection-device-id"] == "dev1"
    assert m.device_id == "dev1"


@pytest.mark.parametrize("suffix", ["", "/"])
def test_telemetry_without_property_bag_gets_message_id(hub, device, suffix):
    """'devices/{id}/messages/events' with or without a trailing '/' is telemetry; a message id is generated."""
    c, _ = raw_device(hub, device, clean_session=True)
    try:
        c.send(publish_packet(f"devices/{device.device_id}/messages/events{suffix}", b"hello", qos=1, packet_id=3))
        c.expect(PUBACK)
    finally:
        c.close()
    (m,) = list(hub.events.read())
    assert m.body == b"hello"
    assert m.properties == {}
    assert len(m.message_id) >= 32  # a generated UUID
    assert m.text() == "hello"


def test_qos0_publishes_are_stored(hub, device):
    """QoS 0 telemetry is stored too (no PUBACK is sent for it)."""
    c, _ = raw_device(hub, device, clean_session=True)
    try:
        for i in range(50):
            c.send(publish_packet(telemetry_topic(device.device_id), f"q0-{i}".encode(), qos=0))
        c.ping()  # the hub answers in order: everything before PINGREQ was read
        assert wait_until(lambda: _count(hub) == 50, 5)
    finally:
        c.close()
    assert [m.body for m in hub.events.read()] == [f"q0-{i}".encode() for i in range(50)]


def test_retain_flag_is_reported_as_property(hub, device):
    """A RETAIN publish is stored (not retained) with the application property mqtt-retain=true."""
    c, _ = raw_device(hub, device, clean_session=True)
    try:
        c.send(publish_packet(telemetry_topic(device.device_id), b"r", qos=1, packet_id=1, retain=True))
        c.expect(PUBACK)
    finally:
        c.close()
    (m,) = list(hub.events.read())
    assert m.properties.get("mqtt-retain") == "true"


def test_publishes_pipelined_behind_connect_are_processed_after_connack(hub, device, raw_clients):
    """PUBLISH packets sent in the same write as CONNECT are handled after the CONNACK and acknowledged."""
    c = raw_clients(hub.ports["mqtt"])
    c.send(connect_packet(device.device_id, username_for(hub.hostname, device.device_id),
                          sas_for(hub.hostname, device.device_id, device.primary_key), clean_session=True)
           + b"".join(publish_packet(telemetry_topic(device.device_id), b"p%d" % i, qos=1, packet_id=i + 1)
                      for i in range(5)))
    assert c.expect(CONNACK).body == b"\x00\x00"
    assert [c.expect(PUBACK).packet_id for _ in range(5)] == [1, 2, 3, 4, 5]
    assert [m.body for m in hub.events.read()] == [b"p0", b"p1", b"p2", b"p3", b"p4"]


def test_pingreq_answered(hub, device):
    """PINGREQ is answered with PINGRESP."""
    c, _ = raw_device(hub, device, clean_session=True)
    try:
        for _ in range(3):
            c.ping()
    finally:
        c.close()


def test_twin_topics_are_acknowledged_not_stored(hub, device):
    """A QoS 1 publish on a $iothub twin topic is acknowledged but does not land in the event log."""
    c, _ = raw_device(hub, device, clean_session=True)
    try:
        c.send(publish_packet("$iothub/twin/GET/?$rid=1", b"", qos=1, packet_id=9))
        assert c.expect(PUBACK).packet_id == 9
        c.ping()
    finally:
        c.close()
    assert _count(hub) == 0


# ---------------------------------------------------------------------------------------------------------
# Persistent sessions and cloud-to-device delivery
# ---------------------------------------------------------------------------------------------------------
def test_persistent_session_survives_reconnect(hub, device, paho_clients):
    """With CleanSession=0 the subscription survives a disconnect: session present on reconnect, delivery works."""
    c = paho_clients(hub, device.device_id, device.primary_key, clean_session=False)
    assert c.connect() == RC_ACCEPTED and c.session_present == 0
    assert c.subscribe(devicebound_filter(device.device_id), 1) == (1,)
    c.disconnect()
    c.close()

    c2 = paho_clients(hub, device.device_id, device.primary_key, clean_session=False)
    assert c2.connect() == RC_ACCEPTED
    assert c2.session_present == 1
    topic = f"devices/{device.device_id}/messages/devicebound/%24.mid=c2d-1"
    hub._publish_to_client(device.device_id, topic, b"to the device", 1)
    msg = c2.next_message()
    assert msg.topic == topic
    assert msg.payload == b"to the device"
    assert msg.qos == 1


def test_publish_to_client_requires_a_matching_subscription(hub, device):
    """_publish_to_client raises NotFoundError for unknown clients and for topics the client did not subscribe to."""
    with pytest.raises(fleethub.NotFoundError):
        hub._publish_to_client("nobody", "devices/nobody/messages/devicebound/x", b"", 1)
    c, _ = raw_device(hub, device, clean_session=False)
    try:
        with pytest.raises(fleethub.NotFoundError):  # connected, but not subscribed
            hub._publish_to_client(device.device_id, f"devices/{device.device_id}/messages/devicebound/x", b"", 1)
        assert c.subscribe(1, [(devicebound_filter(device.device_id), 1)]) == [1]
        hub._publish_to_client(device.device_id, f"devices/{device.device_id}/messages/devicebound/x", b"ok", 1)
        topic, pid, payload = c.expect(PUBLISH).publish_parts()
        assert payload == b"ok"
        c.send(puback_packet(pid))
    finally:
        c.close()


def test_unacked_qos1_redelivered_with_dup_after_reconnect_and_restart(hub_factory, data_dir):
    """An unacknowledged QoS 1 message is redelivered with DUP=1 after a reconnect and after a hub restart,
    and is gone once PUBACKed."""
    hub = hub_factory(data_dir)
    dev = hub.devices.create("dev1")
    topic = "devices/dev1/messages/devicebound/%24.mid=m1"

    c, sp = raw_device(hub, dev)
    assert sp == 0
    assert c.subscribe(1, [(devicebound_filter("dev1"), 1)]) == [1]
    hub._publish_to_client("dev1", topic, b"payload-1", 1)
    p = c.expect(PUBLISH)
    t, pid, body = p.publish_parts()
    assert (t, body, p.qos, p.dup) == (topic, b"payload-1", 1, False)
    c.close()  # no PUBACK

    c, sp = raw_device(hub, dev)
    assert sp == 1
    p = c.expect(PUBLISH)
    assert p.publish_parts() == (topic, pid, b"payload-1")
    assert (p.qos, p.dup) == (1, True)
    c.close()  # still no PUBACK

    hub.close()
    hub = hub_factory(data_dir)
    c, sp = raw_device(hub, dev)
    assert sp == 1
    p = c.expect(PUBLISH)
    assert p.publish_parts() == (topic, pid, b"payload-1")
    assert (p.qos, p.dup) == (1, True)
    c.send(puback_packet(pid))
    c.ping()
    c.send(DISCONNECT_PACKET)
    c.close()

    # Acknowledged: neither a reconnect nor a restart brings it back.
    c, sp = raw_device(hub, dev)
    assert sp == 1
    c.ping()  # the first packet after CONNACK is the PINGRESP: nothing was redelivered
    c.close()
    hub.close()
    hub = hub_factory(data_dir)
    c, sp = raw_device(hub, dev)
    assert sp == 1
    c.ping()
    c.close()


def test_persistent_subscription_survives_hub_restart(hub_factory, data_dir, paho_clients):
    """A persistent session and its subscription survive closing the hub and opening a new one on the data dir."""
    hub = hub_factory(data_dir)
    dev = hub.devices.create("dev1")
    c = paho_clients(hub, "dev1", dev.primary_key, clean_session=False)
    assert c.connect() == RC_ACCEPTED
    assert c.subscribe(devicebound_filter("dev1"), 1) == (1,)
    c.disconnect()
    c.close()
    hub.close()

    hub2 = hub_factory(data_dir)
    # The session is on disk: a message can be queued for the offline client ...
    hub2._publish_to_client("dev1", "devices/dev1/messages/devicebound/queued", b"while offline", 1)
    c2 = paho_clients(hub2, "dev1", dev.primary_key, clean_session=False)
    assert c2.connect() == RC_ACCEPTED
    assert c2.session_present == 1
    # ... and is delivered on reconnect, without a new SUBSCRIBE; live delivery works too.
    m = c2.next_message()
    assert (m.topic, m.payload) == ("devices/dev1/messages/devicebound/queued", b"while offline")
    hub2._publish_to_client("dev1", "devices/dev1/messages/devicebound/live", b"live", 1)
    m = c2.next_message()
    assert (m.topic, m.payload) == ("devices/dev1/messages/devicebound/live", b"live")


def test_clean_session_discards_the_session(hub, device, paho_clients):
    """CleanSession=1 discards a stored session: session present 0 and the old subscription is gone."""
    c = paho_clients(hub, device.device_id, device.primary_key, clean_session=False)
    assert c.connect() == RC_ACCEPTED
    assert c.subscribe(devicebound_filter(device.device_id), 1) == (1,)
    c.disconnect()
    c.close()

    c2 = paho_clients(hub, device.device_id, device.primary_key, clean_session=True)
    assert c2.connect() == RC_ACCEPTED
    assert c2.session_present == 0
    with pytest.raises(fleethub.NotFoundError):
        hub._publish_to_client(device.device_id, f"devices/{device.device_id}/messages/devicebound/x", b"x", 1)
    c2.disconnect()
    c2.close()
    assert wait_until(lambda: hub.devices.get("dev1").connection_state == "Disconnected", 5)
    time.sleep(0.3)  # let the hub's group commits settle (see the racing variant below)
    with pytest.raises(fleethub.NotFoundError):  # a clean session ends with its connection
        hub._publish_to_client(device.device_id, f"devices/{device.device_id}/messages/devicebound/x", b"x", 1)

    c3 = paho_clients(hub, device.device_id, device.primary_key, clean_session=False)
    assert c3.connect() == RC_ACCEPTED
    assert c3.session_present == 0


def test_discarded_session_is_not_resurrected_right_after_clean_session_ends(hub, device):
    """Right after a CleanSession=1 connection ends, the persistent session it discarded stays discarded:
    a cloud-to-device publish finds no session, and a later CleanSession=0 connect has no session present."""
    f = devicebound_filter(device.device_id)
    topic = f"devices/{device.device_id}/messages/devicebound/x"
    for attempt in range(8):
        c, _ = raw_device(hub, device, clean_session=False)
        assert c.subscribe(1, [(f, 1)]) == [1]
        c.send(DISCONNECT_PACKET)
        assert c.wait_closed(5)
        c.close()

        c, sp = raw_device(hub, device, clean_session=True)  # discards the session above
        assert sp == 0
        c.send(DISCONNECT_PACKET)
        assert c.wait_closed(5)
        c.close()
        assert wait_until(lambda: hub.devices.get("dev1").connection_state == "Disconnected", 5)
        # No session exists any more, so this must fail, however soon it comes.
        with pytest.raises(fleethub.NotFoundError):
            hub._publish_to_client(device.device_id, topic, b"for a discarded session", 1)

        c, sp = raw_device(hub, device, clean_session=True)  # end in a clean state for the next round
        c.send(DISCONNECT_PACKET)
        c.wait_closed(5)
        c.close()
        assert sp == 0, f"attempt {attempt}: the discarded session came back"


def test_unsubscribe_removes_subscription(hub, device):
    """UNSUBSCRIBE is answered with UNSUBACK and removes the subscription."""
    c, _ = raw_device(hub, device)
    try:
        f = devicebound_filter(device.device_id)
        assert c.subscribe(5, [(f, 1)]) == [1]
        c.send(unsubscribe_packet(6, [f]))
        p = c.expect(UNSUBACK)
        assert p.packet_id == 6
        with pytest.raises(fleethub.NotFoundError):
            hub._publish_to_client(device.device_id, f"devices/{device.device_id}/messages/devicebound/x", b"", 1)
    finally:
        c.close()


def test_takeover_closes_the_first_connection(hub, device, raw_clients):
    """A second connection with the same client id closes the first; the second one keeps working."""
    first, _ = raw_device(hub, device)
    try:
        second, sp = raw_device(hub, device)
        try:
            assert sp == 1
            assert first.wait_closed(5)
            second.ping()
            assert second.is_open_after(0.2)
            second.send(publish_packet(telemetry_topic(device.device_id), b"after", qos=1, packet_id=1))
            assert second.expect(PUBACK).packet_id == 1
            assert wait_until(lambda: hub.devices.get("dev1").connection_state == "Connected", 5)
        finally:
            second.close()
    finally:
        first.close()


# ---------------------------------------------------------------------------------------------------------
# Keep-alive and token expiry
# ---------------------------------------------------------------------------------------------------------
def test_keepalive_timeout_closes_silent_connection(hub, device):
    """With keep-alive 1 s and silence, the hub closes the connection after about 1.5 s (not before 1.4 s)."""
    c, _ = raw_device(hub, device, clean_session=True, keepalive=1)
    t0 = time.monotonic()
    try:
        assert c.wait_closed(5)
        elapsed = time.monotonic() - t0
    finally:
        c.close()
    assert 1.4 <= elapsed <= 2.5, elapsed


def test_keepalive_pings_keep_connection_open(hub, device):
    """A client that sends PINGREQ within its keep-alive stays connected past 1.5x keep-alive."""
    c, _ = raw_device(hub, device, clean_session=True, keepalive=1)
    try:
        for _ in range(6):
            time.sleep(0.5)
            c.ping()
        assert not c.closed
    finally:
        c.close()


def test_connection_closed_when_sas_token_expires(hub, device):
    """The hub closes a connection when its SAS token expires."""
    exp = int(time.time()) + 2
    c = RawMqtt(hub.ports["mqtt"])
    try:
        rc, _ = c.mqtt_connect(device.device_id, username_for(hub.hostname, device.device_id),
                               sas_for(hub.hostname, device.device_id, device.primary_key, expiry=exp),
                               clean_session=True)
        assert rc == RC_ACCEPTED
        assert c.wait_closed(6)
        assert time.time() >= exp - 0.1
    finally:
        c.close()


# ---------------------------------------------------------------------------------------------------------
# Authorization of topics
# ---------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("topic", [
    "devices/other/messages/events/",
    "devices/dev10/messages/events/",  # the device id is a prefix of this one
    "devices/dev1/messages/devicebound/",
    "foo/bar",
    "$iothub/unknown",
])
def test_publish_outside_own_topics_closes_connection_and_stores_nothing(hub, device, topic):
    """Publishing to another device's topic or outside the IoT Hub topic space closes the connection; nothing is stored."""
    hub.devices.create("other")
    hub.devices.create("dev10")
    c, _ = raw_device(hub, device, clean_session=True)
    try:
        c.send(publish_packet(topic, b"forbidden", qos=1, packet_id=1))
        with pytest.raises(ConnectionClosed):
            while True:
                p = c.read_packet(5)
                assert p.type != PUBACK, "a forbidden publish was acknowledged"
    finally:
        c.close()
    assert _count(hub) == 0


def test_subscribe_to_foreign_filter_refused_with_0x80(hub, device):
    """SUBSCRIBE to another device's or a wildcard filter gets SUBACK 0x80; allowed filters in the same packet are granted."""
    c, _ = raw_device(hub, device)
    try:
        codes = c.subscribe(1, [
            (devicebound_filter(device.device_id), 1),
            ("devices/other/messages/devicebound/#", 1),
            ("#", 0),
            ("devices/+/messages/devicebound/#", 1),
            ("$iothub/methods/POST/#", 0),
        ])
        assert codes == [1, 0x80, 0x80, 0x80, 0]
        c.ping()  # still connected
    finally:
        c.close()


def test_subscribe_qos2_granted_qos1(hub, device):
    """A QoS 2 subscription is granted QoS 1 (IoT Hub's maximum)."""
    c, _ = raw_device(hub, device)
    try:
        assert c.subscribe(1, [(devicebound_filter(device.device_id), 2)]) == [1]
    finally:
        c.close()


def test_qos2_publish_closes_connection(hub, device):
    """A QoS 2 PUBLISH closes the connection and is not stored."""
    c, _ = raw_device(hub, device, clean_session=True)
    try:
        c.send(publish_packet(telemetry_topic(device.device_id), b"qos2", qos=2, packet_id=1))
        assert c.wait_closed(5)
    finally:
        c.close()
    assert _count(hub) == 0


# ---------------------------------------------------------------------------------------------------------
# Registry changes affect live connections
# ---------------------------------------------------------------------------------------------------------
def test_disabling_a_connected_device_closes_its_connection(hub, device, paho_clients):
    """disable() closes the device's live connection and later connects are refused with CONNACK 5."""
    c, _ = raw_device(hub, device)
    try:
        assert not c.wait_closed(0.2)
        hub.devices.disable(device.device_id, "stolen")
        assert c.wait_closed(5)
    finally:
        c.close()
    assert wait_until(lambda: hub.devices.get("dev1").connection_state == "Disconnected", 5)
    again = paho_clients(hub, device.device_id, device.primary_key)
    assert again.connect() == RC_NOT_AUTHORIZED


def test_deleting_a_connected_device_closes_its_connection(hub, device, paho_clients):
    """delete() closes the device's live connection and the identity can no longer connect."""
    c, _ = raw_device(hub, device)
    try:
        hub.devices.delete(device.device_id)
        assert c.wait_closed(5)
    finally:
        c.close()
    again = paho_clients(hub, device.device_id, device.primary_key)
    assert again.connect() == RC_NOT_AUTHORIZED


def test_disabling_one_device_leaves_others_connected(hub, device):
    """Disabling one device leaves other devices' connections open."""
    other = hub.devices.create("dev2")
    c1, _ = raw_device(hub, device)
    c2, _ = raw_device(hub, other)
    try:
        hub.devices.disable("dev2")
        assert c2.wait_closed(5)
        assert c1.is_open_after(0.1)
    finally:
        c1.close()
        c2.close()


# ---------------------------------------------------------------------------------------------------------
# TLS
# ---------------------------------------------------------------------------------------------------------
def test_tls_listener_with_hub_ca(hub, device, paho_clients):
    """paho over TLS, trusting the hub's own CA, connects to 'localhost' and its QoS 1 telemetry is stored."""
    assert hub.ports["mqtts"] and hub.ca_cert.startswith("-----BEGIN CERTIFICATE-----")
    c = paho_clients(hub, device.device_id, device.primary_key, tls=True)
    assert c.connect() == RC_ACCEPTED
    info = c.publish(telemetry_topic(device.device_id, "%24.mid=tls-1"), b"secure", qos=1)
    c.wait_acked([info.mid])
    (m,) = list(hub.events.read())
    assert (m.body, m.message_id) == (b"secure", "tls-1")


def test_tls_1_2_forced(hub, device, paho_clients):
    """A client limited to TLS 1.2 (as the Azure SDKs configure theirs) connects over the TLS listener."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_verify_locations(cafile=hub.ca_cert_path)
    c = paho_clients(hub, device.device_id, device.primary_key, tls=True, ssl_context=ctx)
    assert c.connect() == RC_ACCEPTED
    sock = c.client.socket()
    assert sock.version() == "TLSv1.2"
    info = c.publish(telemetry_topic(device.device_id), b"tls12", qos=1)
    c.wait_acked([info.mid])


def test_tls_server_certificate_is_verified_by_the_hub_ca_only(hub):
    """The server certificate names 'localhost' and chains to hub.ca_cert, not to the system trust store."""
    port = hub.ports["mqtts"]
    ok = ssl.create_default_context(cafile=hub.ca_cert_path)
    with socket.create_connection(("localhost", port), timeout=5) as s:
        with ok.wrap_socket(s, server_hostname="localhost") as t:
            assert t.version() in ("TLSv1.2", "TLSv1.3")
    untrusted = ssl.create_default_context()
    with socket.create_connection(("localhost", port), timeout=5) as s:
        with pytest.raises(ssl.SSLCertVerificationError):
            untrusted.wrap_socket(s, server_hostname="localhost")


def test_tls_handshake_failure_does_not_hurt_hub(hub, device, paho_clients):
    """Plain MQTT bytes sent to the TLS port are refused there; the TLS listener keeps serving."""
    with socket.create_connection(("127.0.0.1", hub.ports["mqtts"]), timeout=5) as s:
        s.sendall(connect_packet("dev1", "u", "p"))
        s.settimeout(5)
        try:
            data = s.recv(100)
        except ConnectionResetError:
            data = b""
        assert not data.startswith(bytes([CONNACK << 4]))
    c = paho_clients(hub, device.device_id, device.primary_key, tls=True)
    assert c.connect() == RC_ACCEPTED


# ---------------------------------------------------------------------------------------------------------
# Limits and garbage
# ---------------------------------------------------------------------------------------------------------
def test_message_at_200kb_is_accepted(hub, device):
    """A 200 KB message (under IoT Hub's 256 KB limit) is acknowledged and stored intact."""
    body = bytes(range(256)) * 800
    c, _ = raw_device(hub, device, clean_session=True)
    try:
        c.send(publish_packet(telemetry_topic(device.device_id), body, qos=1, packet_id=1))
        assert c.expect(PUBACK).packet_id == 1
    finally:
        c.close()
    (m,) = list(hub.events.read())
    assert m.body == body


def test_message_over_256kb_closes_connection(hub, device):
    """A 300 KB message (over 256 KB, under the packet limit) closes the connection and is not stored."""
    c, _ = raw_device(hub, device, clean_session=True)
    try:
        c.try_send(publish_packet(telemetry_topic(device.device_id), b"x" * (300 * 1024), qos=1, packet_id=1))
        with pytest.raises(ConnectionClosed):
            while True:
                assert c.read_packet(5).type != PUBACK
    finally:
        c.close()
    assert _count(hub) == 0


def test_oversized_packet_closes_connection(hub, device, paho_clients):
    """A packet over the size limit (2 MB) closes the connection; nothing is stored and the hub still serves."""
    c, _ = raw_device(hub, device, clean_session=True)
    try:
        c.try_send(publish_packet(telemetry_topic(device.device_id), b"y" * (2 * 1024 * 1024), qos=1, packet_id=1))
        assert c.wait_closed(5)
    finally:
        c.close()
    assert _count(hub) == 0
    ok = paho_clients(hub, device.device_id, device.primary_key, clean_session=True)
    assert ok.connect() == RC_ACCEPTED


def test_oversized_header_alone_closes_connection(hub, device):
    """Announcing a 100 MB PUBLISH in the fixed header is enough for the hub to close the connection."""
    c, _ = raw_device(hub, device, clean_session=True)
    try:
        c.send(bytes([0x32]) + bytes([0x80, 0x80, 0x80, 0x30]))  # remaining length 100,663,296
        assert c.wait_closed(5)
    finally:
        c.close()


@pytest.mark.parametrize("garbage", [
    b"\x00\x01\x02\x03garbage",
    b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n",
    b"\x10\xff\xff\xff\xff\xff",  # a 5-byte remaining length
    b"\x10\x05\x00\x04MQ",  # truncated CONNECT, then more garbage
    bytes(range(256)) * 4,
])
def test_garbage_before_connect_closes_connection(hub, device, paho_clients, garbage):
    """Garbage instead of a CONNECT closes the connection without a CONNACK; the hub then accepts a good client."""
    c = RawMqtt(hub.ports["mqtt"])
    try:
        c.try_send(garbage)
        if garbage.startswith(b"\x10\x05"):
            c.try_send(b"\xff" * 16)
        with pytest.raises(ConnectionClosed):
            while True:
                p = c.read_packet(5)
                assert p.type != CONNACK or p.body[1] != RC_ACCEPTED
    finally:
        c.close()
    good = paho_clients(hub, device.device_id, device.primary_key, clean_session=True)
    assert good.connect() == RC_ACCEPTED


@pytest.mark.parametrize("garbage", [
    b"\xf0\x00",  # reserved packet type 15
    b"\x00\x00",  # reserved packet type 0
    b"\x20\x02\x00\x00",  # CONNACK from a client
    b"\x82\x02\x00\x01",  # SUBSCRIBE without a topic filter
    b"\x80\x05\x00\x01\x00\x00\x00",  # SUBSCRIBE with reserved flags 0
    b"\x30\x05\x00\x10abc",  # PUBLISH whose topic length overruns the packet
    b"\x30\x06\x00\x03a+b" + b"x",  # PUBLISH topic with a wildcard
    b"\x30\x05\x00\x03\xff\xfe\xfd",  # PUBLISH topic that is not UTF-8
])
def test_garbage_after_connect_closes_connection(hub, device, paho_clients, garbage):
    """A malformed or unexpected packet after CONNECT closes the connection; the hub keeps serving."""
    c, _ = raw_device(hub, device, clean_session=True)
    try:
        c.try_send(garbage)
        assert c.wait_closed(5)
    finally:
        c.close()
    assert _count(hub) == 0
    good = paho_clients(hub, device.device_id, device.primary_key, clean_session=True)
    assert good.connect() == RC_ACCEPTED
    info = good.publish(telemetry_topic(device.device_id), b"still alive", qos=1)
    good.wait_acked([info.mid])


def test_many_concurrent_connections(hub):
    """Twenty devices connected at once each get their telemetry stored under their own identity."""
    devs = [hub.devices.create(f"multi{i}") for i in range(20)]
    conns = []
    try:
        for d in devs:
            conns.append(raw_device(hub, d, clean_session=True)[0])
        assert wait_until(lambda: hub.devices.stats()["connected"] == 20, 5)
        for i, (d, c) in enumerate(zip(devs, conns)):
            c.send(publish_packet(telemetry_topic(d.device_id), d.device_id.encode(), qos=1, packet_id=i + 1))
        for i, c in enumerate(conns):
            assert c.expect(PUBACK).packet_id == i + 1
    finally:
        for c in conns:
            c.close()
    msgs = list(hub.events.read())
    assert sorted(m.device_id for m in msgs) == sorted(d.device_id for d in devs)
    assert all(m.body == m.device_id.encode() for m in msgs)
    assert wait_until(lambda: hub.devices.stats()["connected"] == 0, 5)


def test_graceful_disconnect_then_reconnect(hub, device):
    """DISCONNECT closes the connection cleanly and the device can reconnect straight away."""
    c, _ = raw_device(hub, device)
    c.send(DISCONNECT_PACKET)
    assert c.wait_closed(5)
    c.close()
    c2, sp = raw_device(hub, device)
    try:
        assert sp == 1
        c2.ping()
    finally:
        c2.close()


def test_hub_stop_closes_connections(hub, device):
    """hub.stop() closes live connections and the listener; the event log stays readable until close()."""
    c, _ = raw_device(hub, device, clean_session=True)
    c.send(publish_packet(telemetry_topic(device.device_id), b"before stop", qos=1, packet_id=1))
    c.expect(PUBACK)
    port = hub.ports["mqtt"]
    hub.stop()
    try:
        assert c.wait_closed(5)
    finally:
        c.close()
    assert not hub.running
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    assert [m.body for m in hub.events.read()] == [b"before stop"]


# ---------------------------------------------------------------------------------------------------------
# Policy tokens, modules, and session lifetime tied to the identity
# ---------------------------------------------------------------------------------------------------------
def test_policy_token_with_device_connect_is_accepted(hub, device):
    """A token signed with the 'device' shared access policy (skn=device) authenticates any device."""
    key = hub.policies()["device"]["primary_key"]
    tok = fleethub.make_sas_token(f"{hub.hostname}/devices/{device.device_id}", key, key_name="device")
    c = RawMqtt(hub.ports["mqtt"])
    try:
        rc, _ = c.mqtt_connect(device.device_id, username_for(hub.hostname, device.device_id), tok, clean_session=True)
        assert rc == RC_ACCEPTED
        c.send(publish_packet(telemetry_topic(device.device_id), b"policy", qos=1, packet_id=1))
        c.expect(PUBACK)
    finally:
        c.close()
    (m,) = list(hub.events.read())
    assert json.loads(m.system_properties["iothub-connection-auth-method"])["type"] == "sasToken"
    # a hub-wide resource is covered too
    tok2 = fleethub.make_sas_token(hub.hostname, key, key_name="device")
    rc, _, _ = _raw_connack(hub, device.device_id, username_for(hub.hostname, device.device_id), tok2,
                            clean_session=True)
    assert rc == RC_ACCEPTED


def test_policy_token_without_device_connect_is_refused(hub, device):
    """A token signed with the 'service' policy (no DeviceConnect right) is refused with CONNACK 5."""
    key = hub.policies()["service"]["primary_key"]
    tok = fleethub.make_sas_token(f"{hub.hostname}/devices/{device.device_id}", key, key_name="service")
    rc, _, closed = _raw_connack(hub, device.device_id, username_for(hub.hostname, device.device_id), tok)
    assert rc == RC_NOT_AUTHORIZED and closed
    bad = fleethub.make_sas_token(f"{hub.hostname}/devices/{device.device_id}", key, key_name="no-such-policy")
    rc, _, _ = _raw_connack(hub, device.device_id, username_for(hub.hostname, device.device_id), bad)
    assert rc == RC_NOT_AUTHORIZED


def test_module_identity_telemetry(hub, device):
    """A module connects as '{device}/{module}' and its telemetry carries the module id."""
    mod = hub.devices.create_module(device.device_id, "mod1")
    assert mod.module_id == "mod1"
    assert ";ModuleId=mod1;" in mod.connection_string
    c = RawMqtt(hub.ports["mqtt"])
    try:
        tok = fleethub.make_sas_token(f"{hub.hostname}/devices/{device.device_id}/modules/mod1", mod.primary_key)
        rc, _ = c.mqtt_connect(f"{device.device_id}/mod1", f"{hub.hostname}/{device.device_id}/mod1/?api-version=x",
                               tok, clean_session=True)
        assert rc == RC_ACCEPTED
        c.send(publish_packet(f"devices/{device.device_id}/modules/mod1/messages/events/k=v", b"from module",
                              qos=1, packet_id=1))
        assert c.expect(PUBACK).packet_id == 1
    finally:
        c.close()
    (m,) = list(hub.events.read())
    assert (m.device_id, m.module_id, m.body, m.properties) == ("dev1", "mod1", b"from module", {"k": "v"})
    assert m.system_properties["iothub-connection-module-id"] == "mod1"


def test_module_cannot_publish_as_its_device(hub, device):
    """A module publishing on its parent device's own telemetry topic is disconnected; nothing is stored."""
    mod = hub.devices.create_module(device.device_id, "mod1")
    c = RawMqtt(hub.ports["mqtt"])
    try:
        tok = fleethub.make_sas_token(f"{hub.hostname}/devices/{device.device_id}/modules/mod1", mod.primary_key)
        rc, _ = c.mqtt_connect(f"{device.device_id}/mod1", f"{hub.hostname}/{device.device_id}/mod1/?api-version=x",
                               tok, clean_session=True)
        assert rc == RC_ACCEPTED
        c.send(publish_packet(telemetry_topic(device.device_id), b"impostor", qos=1, packet_id=1))
        with pytest.raises(ConnectionClosed):
            while True:
                assert c.read_packet(5).type != PUBACK
    finally:
        c.close()
    assert _count(hub) == 0


def test_unsubscribe_persists_across_restart(hub_factory, data_dir):
    """An UNSUBSCRIBE on a persistent session is remembered after a hub restart."""
    hub = hub_factory(data_dir)
    dev = hub.devices.create("dev1")
    c, _ = raw_device(hub, dev)
    f = devicebound_filter("dev1")
    assert c.subscribe(1, [(f, 1)]) == [1]
    c.send(unsubscribe_packet(2, [f]))
    c.expect(UNSUBACK)
    c.ping()
    c.close()
    hub.close()
    hub = hub_factory(data_dir)
    with pytest.raises(fleethub.NotFoundError):
        hub._publish_to_client("dev1", "devices/dev1/messages/devicebound/x", b"", 1)
    c, sp = raw_device(hub, dev)
    try:
        assert sp == 1
    finally:
        c.close()


def test_deleting_a_device_drops_its_persistent_session(hub, device):
    """A deleted and re-created device starts without the old persistent session or its queued messages."""
    c, _ = raw_device(hub, device)
    assert c.subscribe(1, [(devicebound_filter("dev1"), 1)]) == [1]
    c.send(DISCONNECT_PACKET)
    assert c.wait_closed(5)
    c.close()
    hub._publish_to_client("dev1", "devices/dev1/messages/devicebound/old", b"queued for the old identity", 1)
    hub.devices.delete("dev1")
    with pytest.raises(fleethub.NotFoundError):
        hub._publish_to_client("dev1", "devices/dev1/messages/devicebound/x", b"", 1)
    again = hub.devices.create("dev1")
    c, sp = raw_device(hub, again)
    try:
        assert sp == 0
        c.ping()  # nothing queued for the old identity arrives first
    finally:
        c.close()
