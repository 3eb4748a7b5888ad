"""A throwaway certificate authority for servers the tests run with TLS (trustme)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import trustme


@dataclass(frozen=True)
class TlsFiles:
    """PEM files: the CA clients trust, and the server's certificate chain and key."""

    ca: Path
    certificate: Path
    key: Path


def make_tls_files(directory: Path, *, hosts: tuple[str, ...] = ("127.0.0.1", "localhost")
                   ) -> TlsFiles:
    """A new CA and a server certificate for ``hosts``, written under ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    authority = trustme.CA()
    server = authority.issue_cert(*hosts)
    files = TlsFiles(ca=directory / "ca.pem", certificate=directory / "server.pem",
                     key=directory / "server.key")
    authority.cert_pem.write_to_path(str(files.ca))
    server.private_key_pem.write_to_path(str(files.key))
    server.cert_chain_pems[0].write_to_path(str(files.certificate))
    for extra in server.cert_chain_pems[1:]:
        extra.write_to_path(str(files.certificate), append=True)
    files.key.chmod(0o644)  # the server may run as another user
    return files
