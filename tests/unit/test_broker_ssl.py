"""The broker's TLS settings, read from PROVISIONING_BROKER_URL: verified unless told not to."""

from __future__ import annotations

import dataclasses
import ssl

import pytest

from provisioning.core.config import Settings, load_settings
from worker.celery_app import broker_ssl, broker_transport, create_app


def config(broker_url: str) -> Settings:
    return dataclasses.replace(load_settings(), broker_url=broker_url)


def test_a_rediss_url_without_settings_verifies_the_certificate_against_the_system_store():
    assert broker_ssl(config("rediss://redis.example.com:6380/2")) == {
        "ssl_cert_reqs": ssl.CERT_REQUIRED, "ssl_ca_certs": None,
        "ssl_certfile": None, "ssl_keyfile": None,
    }


@pytest.mark.parametrize(("spelling", "expected"), [
    ("required", ssl.CERT_REQUIRED), ("optional", ssl.CERT_OPTIONAL), ("none", ssl.CERT_NONE),
    ("CERT_REQUIRED", ssl.CERT_REQUIRED), ("CERT_OPTIONAL", ssl.CERT_OPTIONAL),
    ("CERT_NONE", ssl.CERT_NONE),
])
def test_each_spelling_of_ssl_cert_reqs_is_understood(spelling: str, expected: ssl.VerifyMode):
    found = broker_ssl(config(f"rediss://redis.example.com:6380/0?ssl_cert_reqs={spelling}"))
    assert found is not None and found["ssl_cert_reqs"] == expected


def test_the_ca_and_client_certificate_files_are_passed_through():
    found = broker_ssl(config("rediss://:secret@redis.example.com:6380/1?ssl_cert_reqs=required"
                              "&ssl_ca_certs=/etc/ssl/broker%20ca.pem"
                              "&ssl_certfile=/etc/ssl/client.pem&ssl_keyfile=/etc/ssl/client.key"))
    assert found == {"ssl_cert_reqs": ssl.CERT_REQUIRED, "ssl_ca_certs": "/etc/ssl/broker ca.pem",
                     "ssl_certfile": "/etc/ssl/client.pem", "ssl_keyfile": "/etc/ssl/client.key"}


@pytest.mark.parametrize("query", ["ssl_cert_reqs=sometimes", "ssl_cert_reqs=",
                                   "ssl_check_hostname=false"])
def test_a_setting_that_is_not_understood_stops_start_up_naming_the_variable(query: str):
    with pytest.raises(ValueError, match="PROVISIONING_BROKER_URL"):
        broker_ssl(config(f"rediss://redis.example.com:6380/0?{query}"))


@pytest.mark.parametrize("url", ["redis://127.0.0.1:6379/0", "filesystem://"])
def test_a_broker_without_tls_has_no_tls_settings(url: str):
    assert broker_ssl(config(url)) is None


@pytest.mark.parametrize(("url", "transport"), [
    ("redis://127.0.0.1:6379/0", "worker.redis_transport:Transport"),
    ("rediss://redis.example.com:6380/0", "worker.redis_transport:Transport"),
    ("filesystem://", None),
])
def test_both_redis_schemes_use_our_transport(url: str, transport: str | None):
    assert broker_transport(config(url)) == transport


def test_the_connection_carries_the_tls_settings_and_the_url_keeps_its_database():
    app = create_app(config("rediss://redis.example.com:6380/7?ssl_cert_reqs=CERT_OPTIONAL"
                            "&ssl_ca_certs=/etc/ssl/broker-ca.pem"))
    connection = app.connection_for_write()
    assert connection.transport_cls == "worker.redis_transport:Transport"
    assert connection.ssl == {"ssl_cert_reqs": ssl.CERT_OPTIONAL,
                              "ssl_ca_certs": "/etc/ssl/broker-ca.pem",
                              "ssl_certfile": None, "ssl_keyfile": None}
    assert (connection.hostname, connection.port, connection.virtual_host) == (
        "redis.example.com", 6380, "7")
