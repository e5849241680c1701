"""X.509 self-signed device authentication with the unmodified Azure IoT device SDK (port 8883)."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest

pytest.importorskip("azure.iot.device")

from azure.iot.device import X509, IoTHubDeviceClient, Message  # noqa: E402
from azure.iot.device import exceptions as sdk_exceptions  # noqa: E402
from cryptography import x509  # noqa: E402
from cryptography.hazmat.primitives import hashes, serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec  # noqa: E402
from cryptography.x509.oid import NameOID  # noqa: E402

pytestmark = [pytest.mark.sdk, pytest.mark.timeout(120)]


def _self_signed(tmp_path, cn):
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(hours=1))
            .not_valid_after(now + dt.timedelta(days=1)).sign(key, hashes.SHA256()))
    cert_path, key_path = tmp_path / f"{cn}.pem", tmp_path / f"{cn}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert, str(cert_path), str(key_path)


def test_self_signed_thumbprint_device_sends_telemetry(sdk_hub, tmp_path):
    """A device registered with the SHA-1 thumbprint of its own certificate connects without a password and its
    messages carry the x509Certificate auth method."""
    hub = sdk_hub
    dev_id = f"x509-{uuid.uuid4().hex[:8]}"
    cert, cert_path, key_path = _self_signed(tmp_path, dev_id)
    thumb = cert.fingerprint(hashes.SHA1()).hex().upper()
    hub.devices.create(dev_id, auth_type="selfSigned", primary_thumbprint=thumb)
    client = IoTHubDeviceClient.create_from_x509_certificate(
        X509(cert_path, key_path), hostname=hub.hostname, device_id=dev_id,
        server_verification_cert=hub.ca_cert, connection_retry=False)
    try:
        client.connect()
        client.send_message(Message("hello from x509"))
    finally:
        client.shutdown()
    msgs = list(hub.events.read(device_id=dev_id))
    assert [m.body for m in msgs] == [b"hello from x509"]
    assert '"type":"x509Certificate"' in msgs[0].system_properties["iothub-connection-auth-method"]


def test_unregistered_certificate_is_refused(sdk_hub, tmp_path):
    """A certificate whose thumbprint is not the device's gets CONNACK 5 (CredentialError in the SDK)."""
    hub = sdk_hub
    dev_id = f"x509-{uuid.uuid4().hex[:8]}"
    registered, _, _ = _self_signed(tmp_path, dev_id + "-a")
    _, other_cert, other_key = _self_signed(tmp_path, dev_id + "-b")
    hub.devices.create(dev_id, auth_type="selfSigned",
                       primary_thumbprint=registered.fingerprint(hashes.SHA256()).hex())
    client = IoTHubDeviceClient.create_from_x509_certificate(
        X509(other_cert, other_key), hostname=hub.hostname, device_id=dev_id,
        server_verification_cert=hub.ca_cert, connection_retry=False)
    try:
        with pytest.raises(sdk_exceptions.CredentialError):
            client.connect()
    finally:
        client.shutdown()
