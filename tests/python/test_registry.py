"""The identity registry (``hub.devices``), the shared access policies and the service connection string."""

from __future__ import annotations

import base64
import re

import pytest

import fleethub
from fleethub.errors import (
    AlreadyExistsError,
    DeviceNotFoundError,
    InvalidArgumentError,
    NotFoundError,
    PreconditionFailedError,
)


def _b64_len(key: str) -> int:
    return len(base64.b64decode(key, validate=True))


def test_create_generates_two_distinct_32_byte_base64_keys(hub):
    """A device created without keys gets a primary and a secondary key, each base64 of 32 random bytes."""
    d = hub.devices.create("dev1")
    assert d.device_id == "dev1"
    assert d.module_id is None
    assert _b64_len(d.primary_key) == 32
    assert _b64_len(d.secondary_key) == 32
    assert d.primary_key != d.secondary_key
    other = hub.devices.create("dev2")
    assert {other.primary_key, other.secondary_key}.isdisjoint({d.primary_key, d.secondary_key})


def test_create_defaults_and_connection_string(hub):
    """A new device is enabled, disconnected, SAS-authenticated and has an etag, generation id and connection string."""
    d = hub.devices.create("dev1")
    assert d.status == "enabled" and d.enabled
    assert d.status_reason is None
    assert d.auth_type == "sas"
    assert d.connection_state == "Disconnected"
    assert d.etag
    assert d.generation_id and d.generation_id.isdigit()
    assert d.connection_string == f"HostName=localhost;DeviceId=dev1;SharedAccessKey={d.primary_key}"
    j = d.to_iothub_json()
    assert j["deviceId"] == "dev1" and j["status"] == "enabled"
    assert j["authentication"]["symmetricKey"]["primaryKey"] == d.primary_key


def test_create_with_given_keys(hub):
    """Keys given at creation are stored as given."""
    p = base64.b64encode(b"p" * 32).decode()
    s = base64.b64encode(b"s" * 16).decode()
    d = hub.devices.create("given", primary_key=p, secondary_key=s)
    assert (d.primary_key, d.secondary_key) == (p, s)
    g = hub.devices.get("given")
    assert (g.primary_key, g.secondary_key) == (p, s)


@pytest.mark.parametrize("bad", ["not base64 !!", base64.b64encode(b"short").decode(),
                                 base64.b64encode(b"x" * 65).decode()])
def test_create_rejects_bad_keys(hub, bad):
    """A key that is not base64 of 16..64 bytes is refused with InvalidArgumentError and nothing is created."""
    with pytest.raises(InvalidArgumentError):
        hub.devices.create("k", primary_key=bad)
    assert "k" not in hub.devices


def test_create_disabled(hub):
    """enabled=False creates a disabled device."""
    d = hub.devices.create("off", enabled=False, status_reason="not yet")
    assert d.status == "disabled"
    assert hub.devices.get("off").status_reason == "not yet"


def test_duplicate_create_raises_already_exists(hub):
    """Creating an existing id raises AlreadyExistsError and leaves the original untouched."""
    d = hub.devices.create("dup")
    with pytest.raises(AlreadyExistsError):
        hub.devices.create("dup")
    assert hub.devices.get("dup").primary_key == d.primary_key
    assert isinstance(AlreadyExistsError("x"), fleethub.Error)


@pytest.mark.parametrize("bad_id", ["a b", "x" * 129, "", "tab\there", "slash/id", "ü", "new\nline", "a&b"])
def test_invalid_device_ids_are_refused(hub, bad_id):
    """Ids with spaces, '/', '&', non-ASCII, control characters, or outside 1..128 characters are InvalidArgumentError."""
    with pytest.raises(InvalidArgumentError):
        hub.devices.create(bad_id)
    assert len(hub.devices) == 0


@pytest.mark.parametrize("ok_id", ["x" * 128, "a", "Dev-1:a.b+c%_#*?!(),=@;$'", "0123456789"])
def test_valid_device_ids_are_accepted(hub, ok_id):
    """Every IoT Hub id character and the 128-character maximum are accepted and round-trip."""
    d = hub.devices.create(ok_id)
    assert d.device_id == ok_id
    assert hub.devices.get(ok_id).device_id == ok_id
    assert ok_id in hub.devices


def test_get_unknown_raises_device_not_found(hub):
    """get() of an unregistered id raises DeviceNotFoundError (a NotFoundError and LookupError)."""
    with pytest.raises(DeviceNotFoundError) as ei:
        hub.devices.get("ghost")
    assert isinstance(ei.value, NotFoundError)
    assert isinstance(ei.value, LookupError)
    assert "ghost" not in hub.devices
    assert 42 not in hub.devices


def test_update_changes_etag_and_honours_precondition(hub):
    """update() with the current etag succeeds and changes the etag; a stale etag raises PreconditionFailedError."""
    d = hub.devices.create("e")
    u = hub.devices.update("e", etag=d.etag, status_reason="first")
    assert u.etag != d.etag
    assert u.status_reason == "first"
    with pytest.raises(PreconditionFailedError):
        hub.devices.update("e", etag=d.etag, status_reason="stale")
    assert hub.devices.get("e").status_reason == "first"
    # quoted (HTTP If-Match style) and wildcard etags
    u2 = hub.devices.update("e", etag=f'"{u.etag}"', status_reason="quoted")
    assert u2.status_reason == "quoted"
    u3 = hub.devices.update("e", etag="*", status_reason="star")
    assert u3.status_reason == "star"
    # generation id does not change on update
    assert u3.generation_id == d.generation_id


def test_update_unknown_field_and_unknown_device(hub):
    """update() refuses unknown fields (TypeError) and unknown devices (DeviceNotFoundError)."""
    hub.devices.create("u")
    with pytest.raises(TypeError):
        hub.devices.update("u", color="red")
    with pytest.raises(DeviceNotFoundError):
        hub.devices.update("nobody", status_reason="x")


def test_update_rotates_keys(hub):
    """Keys can be replaced with update(); the old key no longer validates as the device's key."""
    d = hub.devices.create("rot")
    new = base64.b64encode(b"n" * 32).decode()
    u = hub.devices.update("rot", primary_key=new)
    assert u.primary_key == new
    assert u.secondary_key == d.secondary_key
    assert hub.devices.get("rot").primary_key == new


def test_disable_and_enable(hub):
    """disable() records the reason and status; enable() restores it and clears the reason."""
    hub.devices.create("d")
    dd = hub.devices.disable("d", "maintenance")
    assert dd.status == "disabled" and not dd.enabled
    assert dd.status_reason == "maintenance"
    g = hub.devices.get("d")
    assert g.status == "disabled"
    assert g.status_updated_ms >= dd.status_updated_ms > 0
    e = hub.devices.enable("d")
    assert e.status == "enabled"
    assert not e.status_reason
    assert hub.devices.stats()["enabled"] == 1


def test_delete(hub):
    """delete() removes the device; deleting again raises DeviceNotFoundError; re-creation gets a new generation id."""
    d = hub.devices.create("gone")
    hub.devices.create("stays")
    hub.devices.delete("gone")
    assert "gone" not in hub.devices
    assert len(hub.devices) == 1
    with pytest.raises(DeviceNotFoundError):
        hub.devices.delete("gone")
    with pytest.raises(DeviceNotFoundError):
        hub.devices.get("gone")
    again = hub.devices.create("gone")
    assert again.generation_id != d.generation_id
    assert again.primary_key != d.primary_key


def test_delete_with_stale_etag_is_refused(hub):
    """delete(etag=stale) raises PreconditionFailedError and keeps the device."""
    d = hub.devices.create("x")
    hub.devices.update("x", status_reason="changed")
    with pytest.raises(PreconditionFailedError):
        hub.devices.delete("x", etag=d.etag)
    assert "x" in hub.devices
    hub.devices.delete("x", etag=hub.devices.get("x").etag)
    assert "x" not in hub.devices


def test_list_len_contains_and_paging(hub):
    """list() returns every device sorted by id, also across pages; len() and `in` agree."""
    ids = [f"dev{i:02d}" for i in range(7)]
    for i in reversed(ids):
        hub.devices.create(i)
    assert [d.device_id for d in hub.devices.list()] == ids
    assert [d.device_id for d in hub.devices.list(page_size=2)] == ids
    assert [d.device_id for d in hub.devices.list(page_size=7)] == ids
    assert [d.device_id for d in hub.devices.list(limit=3)] == ids[:3]
    assert [d.device_id for d in hub.devices] == ids
    assert len(hub.devices) == 7
    assert all(i in hub.devices for i in ids)
    hub.devices.disable("dev03")
    st = hub.devices.stats()
    assert st == {"total": 7, "enabled": 6, "disabled": 1, "connected": 0}


def test_registry_persists_across_close_and_reopen(hub_factory, data_dir):
    """Devices, keys, status, etags and generation ids survive closing and reopening the data dir."""
    h1 = hub_factory(data_dir)
    a = h1.devices.create("a")
    b = h1.devices.create("b")
    b = h1.devices.disable("b", "why")
    h1.devices.create("c")
    h1.devices.delete("c")
    pol = h1.policies()
    h1.close()

    h2 = hub_factory(data_dir, start=False)  # the registry works without starting the hub
    assert [d.device_id for d in h2.devices.list()] == ["a", "b"]
    a2, b2 = h2.devices.get("a"), h2.devices.get("b")
    assert (a2.primary_key, a2.secondary_key, a2.etag, a2.generation_id) == (
        a.primary_key, a.secondary_key, a.etag, a.generation_id)
    assert (b2.status, b2.status_reason, b2.etag) == ("disabled", "why", b.etag)
    assert h2.policies() == pol  # policy keys are not regenerated on reopen


def test_registry_works_before_start(hub_factory, data_dir):
    """The registry can be used on a hub that was never started."""
    h = hub_factory(data_dir, start=False)
    assert not h.running
    h.devices.create("early")
    assert "early" in h.devices
    h.start()
    assert h.running
    assert "early" in h.devices


def test_default_policies(hub):
    """The IoT Hub default shared access policies exist with their rights and 32-byte base64 keys."""
    pol = hub.policies()
    for name in ("iothubowner", "service", "device", "registryRead", "registryReadWrite"):
        assert name in pol, name
        assert _b64_len(pol[name]["primary_key"]) >= 16
        assert _b64_len(pol[name]["secondary_key"]) >= 16
        assert pol[name]["primary_key"] != pol[name]["secondary_key"]
    assert len({p["primary_key"] for p in pol.values()}) == len(pol)


def test_service_connection_string(hub):
    """service_connection_string() names the hostname, the policy and its primary key; unknown policies are refused."""
    pol = hub.policies()
    cs = hub.service_connection_string()
    # The fixture's HTTPS listener is on a free port, not 443: HostName carries it for the REST SDK.
    host = f"localhost:{hub.ports['https']}"
    assert cs == f"HostName={host};SharedAccessKeyName=iothubowner;SharedAccessKey={pol['iothubowner']['primary_key']}"
    cs2 = hub.service_connection_string("service")
    assert re.fullmatch(rf"HostName={host};SharedAccessKeyName=service;SharedAccessKey=[A-Za-z0-9+/=]+", cs2)
    assert cs2.endswith(pol["service"]["primary_key"])
    with pytest.raises(InvalidArgumentError):
        hub.service_connection_string("nope")


def test_hostname_is_used_in_connection_strings(hub_factory, tmp_path):
    """A hub with another hostname puts it in device and service connection strings."""
    h = hub_factory(tmp_path / "h2", hostname="hub.example.test", mqtt_port=None, mqtt_plain_port=0, https_port=None)
    assert h.hostname == "hub.example.test"
    d = h.devices.create("d")
    assert d.connection_string.startswith("HostName=hub.example.test;DeviceId=d;")
    assert h.service_connection_string().startswith("HostName=hub.example.test;")


def test_hub_argument_validation(tmp_path):
    """Bad constructor arguments raise InvalidArgumentError / TypeError before anything opens."""
    with pytest.raises(InvalidArgumentError):
        fleethub.Hub(tmp_path / "a", durability="sometimes")
    with pytest.raises(InvalidArgumentError):
        fleethub.Hub(tmp_path / "b", partitions=0)
    with pytest.raises(InvalidArgumentError):
        fleethub.Hub(tmp_path / "c", partitions=33)
    with pytest.raises(InvalidArgumentError):
        fleethub.Hub(tmp_path / "d", mqtt_port=70000)
    with pytest.raises(TypeError):
        fleethub.Hub(tmp_path / "e", colour="blue")


def test_make_sas_token_format():
    """make_sas_token builds 'SharedAccessSignature sr=..&sig=..&se=..' with an HMAC-SHA256 signature."""
    import hashlib
    import hmac
    import urllib.parse

    key = base64.b64encode(b"k" * 32).decode()
    tok = fleethub.make_sas_token("localhost/devices/dev1", key, expiry=2000000000)
    assert tok.startswith("SharedAccessSignature ")
    fields = dict(urllib.parse.parse_qsl(tok[len("SharedAccessSignature "):]))
    assert fields["sr"] == "localhost/devices/dev1"
    assert fields["se"] == "2000000000"
    assert "skn" not in fields
    to_sign = urllib.parse.quote("localhost/devices/dev1", safe="") + "\n2000000000"
    want = base64.b64encode(hmac.new(base64.b64decode(key), to_sign.encode(), hashlib.sha256).digest()).decode()
    assert fields["sig"] == want
    tok2 = fleethub.make_sas_token("localhost", key, expiry=2000000000, key_name="iothubowner")
    assert dict(urllib.parse.parse_qsl(tok2[len("SharedAccessSignature "):]))["skn"] == "iothubowner"
