"""TLS listeners with paho-mqtt: `tls_set(ca_certs=...)` and client certificates.

Certificates are made at test time with the `openssl` command: a CA, a server certificate for
127.0.0.1 and localhost, and client certificates of that CA and of another one.
"""

from __future__ import annotations

import ssl
import subprocess
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from clients import Client, MQTTv5
from harness import Tern


def openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=60)


class Pki:
    """A CA in `directory` and the certificates it signs."""

    def __init__(self, directory: Path, name: str):
        self.dir = directory
        self.name = name
        self.ca = directory / f"{name}.crt"
        self.ca_key = directory / f"{name}.key"
        openssl(
            "req", "-x509", "-nodes", "-days", "30", "-subj", f"/CN={name}",
            "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
            "-keyout", str(self.ca_key), "-out", str(self.ca),
        )

    def issue(self, stem: str, cn: str, extensions: str) -> tuple[Path, Path]:
        """A certificate signed by this CA: (certificate, key)."""
        cert, key = self.dir / f"{stem}.crt", self.dir / f"{stem}.key"
        csr, ext = self.dir / f"{stem}.csr", self.dir / f"{stem}.ext"
        ext.write_text(extensions)
        openssl(
            "req", "-new", "-nodes", "-subj", f"/CN={cn}",
            "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
            "-keyout", str(key), "-out", str(csr),
        )
        openssl(
            "x509", "-req", "-days", "30", "-in", str(csr), "-CA", str(self.ca),
            "-CAkey", str(self.ca_key), "-CAcreateserial", "-extfile", str(ext),
            "-out", str(cert),
        )
        return cert, key

    def server(self) -> tuple[Path, Path]:
        return self.issue(
            f"{self.name}-server", "localhost",
            "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n",
        )

    def client(self, cn: str) -> tuple[Path, Path]:
        return self.issue(f"{self.name}-{cn}", cn, "extendedKeyUsage=clientAuth\n")


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    return Pki(tmp_path, "py-ca")


@pytest.fixture
def start_tls(tmp_path: Path) -> Iterator:
    """Starts a broker whose only listener is a TLS listener on 127.0.0.1 (`tls` is the body
    of its `[listeners.tls]` table)."""
    started: list[Tern] = []

    def start(tls: str) -> Tern:
        config = tmp_path / f"tls-{len(started)}.toml"
        config.write_text(
            "allow_anonymous = true\n\n[[listeners]]\naddress = \"127.0.0.1:0\"\n\n"
            f"[listeners.tls]\n{tls}"
        )
        broker = Tern(["serve", "--config", str(config)])
        started.append(broker)
        broker.wait_listening()
        return broker

    yield start
    for broker in started:
        broker.stop()


def tls_client(broker: Tern, ca: Path, cert: tuple[Path, Path] | None = None,
               protocol: int = MQTTv5) -> Client:
    client = Client(broker, protocol=protocol)
    client.paho.tls_set(
        ca_certs=str(ca),
        certfile=str(cert[0]) if cert else None,
        keyfile=str(cert[1]) if cert else None,
        tls_version=ssl.PROTOCOL_TLS_CLIENT,
    )
    return client


@pytest.mark.parametrize("protocol", [MQTTv5, mqtt.MQTTv311])
def test_paho_publishes_and_receives_over_tls(pki: Pki, start_tls, protocol: int) -> None:
    cert, key = pki.server()
    broker = start_tls(f'certfile = "{cert}"\nkeyfile = "{key}"\n')
    sub = tls_client(broker, pki.ca, protocol=protocol).connect()
    sub.subscribe("tls/#", qos=1)
    pub = tls_client(broker, pki.ca, protocol=protocol).connect()
    pub.publish("tls/a", b"encrypted", qos=1)
    message = sub.expect_message()
    assert (message.topic, message.payload) == ("tls/a", b"encrypted")
    for client in (sub, pub):
        assert isinstance(client.paho.socket(), ssl.SSLSocket)
        client.disconnect()


def test_paho_mutual_tls(pki: Pki, start_tls, tmp_path: Path) -> None:
    cert, key = pki.server()
    broker = start_tls(
        f'certfile = "{cert}"\nkeyfile = "{key}"\ncafile = "{pki.ca}"\n'
        "require_certificate = true\n"
    )
    device = pki.client("device-7")
    sub = tls_client(broker, pki.ca, device).connect()
    sub.subscribe("m/#", qos=1)
    pub = tls_client(broker, pki.ca, device).connect()
    pub.publish("m/1", b"mutual", qos=2)
    assert sub.expect_message().payload == b"mutual"

    # Without a client certificate, or with one of another CA, there is no CONNACK.
    stranger = Pki(tmp_path, "other-ca").client("stranger")
    for certificate in (None, stranger):
        client = tls_client(broker, pki.ca, certificate)
        with pytest.raises((ssl.SSLError, OSError, AssertionError)):
            client.try_connect()
        assert client.connack is None
        client.close_quietly()


def test_paho_refuses_a_broker_certificate_of_another_ca(pki: Pki, start_tls,
                                                         tmp_path: Path) -> None:
    cert, key = pki.server()
    broker = start_tls(f'certfile = "{cert}"\nkeyfile = "{key}"\n')
    other = Pki(tmp_path, "untrusted")
    client = tls_client(broker, other.ca)
    with pytest.raises(ssl.SSLCertVerificationError):
        client.try_connect()
    client.close_quietly()
