"""The production-shaped docker-compose.yml publishes the API and nothing else to the network:
the mailsink's viewer shows every invitation email, links included, to whoever can reach it."""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
PUBLIC_SERVICES = {"web"}  # the API is meant to be reached; it authenticates its callers
# [host_ip:][published:]target[/protocol], as Compose's short syntax spells a port
SHORT_PORT = re.compile(
    r"^(?:(?P<ip>\[[^\]]*\]|[^:\[\]]+):)??(?:(?P<published>[\d-]+):)?(?P<target>[\d-]+)"
    r"(?:/\w+)?$")


def _services() -> dict[str, dict[str, Any]]:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services: dict[str, dict[str, Any]] = compose["services"]
    return services


def host_addresses(ports: list[Any]) -> list[str]:
    """The host address each published port listens on ("0.0.0.0" when none is named)."""
    found = []
    for port in ports:
        if isinstance(port, dict):
            found.append(str(port.get("host_ip") or "0.0.0.0"))
            continue
        spelled = SHORT_PORT.match(str(port))
        assert spelled, f"cannot read the port {port!r}"
        found.append((spelled.group("ip") or "0.0.0.0").strip("[]"))
    return found


def test_the_port_reader_reads_each_spelling() -> None:
    assert host_addresses(["8025", "8025:8025", "127.0.0.1:8025:8025", "[::1]:8025:8025/tcp",
                           "0.0.0.0:8025:8025", {"target": 8025, "published": 8025},
                           {"target": 8025, "host_ip": "127.0.0.1"}]) == [
        "0.0.0.0", "0.0.0.0", "127.0.0.1", "::1", "0.0.0.0", "0.0.0.0", "127.0.0.1"]


def test_the_mailsink_is_in_the_compose_file() -> None:
    assert "mailsink" in _services()


@pytest.mark.parametrize("name", sorted(set(_services()) - PUBLIC_SERVICES))
def test_a_service_other_than_the_api_is_published_on_loopback_only(name: str) -> None:
    exposed = [address for address in host_addresses(_services()[name].get("ports", []))
               if not ipaddress.ip_address(address).is_loopback]
    assert exposed == [], f"{name} listens on {exposed}: bind it to 127.0.0.1"


def test_the_image_holds_every_package_the_project_installs() -> None:
    import tomllib

    root = Path(__file__).resolve().parents[2]
    included = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"][
        "packages"]["find"]["include"]
    packages = {pattern.rstrip("*") for pattern in included}
    copied = {line.split()[1] for line in (root / "Dockerfile").read_text().splitlines()
              if line.startswith("COPY ") and len(line.split()) == 3}
    assert packages <= copied, packages - copied
