"""TLS for Dask traffic between hosts: ``ZHUGE_DASK_TLS_CA``, ``..._CERT``, ``..._KEY``.

Whoever can reach a Dask scheduler can run code as its workers' user, and attempts travel to
workers with the database URL in them: between hosts, Dask must speak TLS with mutual
authentication. The three settings name a CA certificate and this host's certificate and key
signed by it (``scripts/make-dask-certs.sh`` makes them; ``docs/operations.md``). With them,
zhuge's Dask client (``zhuge up`` with ``ZHUGE_DASK_ADDRESS=tls://...``) and ``zhuge worker``
present that certificate, accept only peers signed by that CA, and refuse plain TCP. The
embedded cluster of ``zhuge up`` without an address keeps its own throw-away certificate.
"""

from __future__ import annotations

from pathlib import Path

from distributed.security import Security

from zhuge.config import Settings
from zhuge.errors import ConfigError

ENV = {
    "dask_tls_ca": "ZHUGE_DASK_TLS_CA",
    "dask_tls_cert": "ZHUGE_DASK_TLS_CERT",
    "dask_tls_key": "ZHUGE_DASK_TLS_KEY",
}


def _files(settings: Settings) -> tuple[str, str, str] | None:
    given = {name: getattr(settings, name) for name in ENV}
    if not any(given.values()):
        return None
    missing = [ENV[name] for name, value in given.items() if not value]
    if missing:
        raise ConfigError(
            f"Dask TLS needs all of ZHUGE_DASK_TLS_CA, ZHUGE_DASK_TLS_CERT and "
            f"ZHUGE_DASK_TLS_KEY; {', '.join(missing)} is not set"
        )
    for name, value in given.items():
        if not Path(value).is_file():
            raise ConfigError(f"{ENV[name]}={value}: no such file")
    return given["dask_tls_ca"], given["dask_tls_cert"], given["dask_tls_key"]


def check_address(address: str, settings: Settings) -> None:
    """With TLS configured, a Dask address must be ``tls://`` (plain TCP would be refused
    by the peers anyway, later and less clearly)."""
    if _files(settings) is not None and not address.startswith("tls://"):
        raise ConfigError(
            f"ZHUGE_DASK_TLS_* is set, so the Dask scheduler's address must start with "
            f"tls://, not {address!r}"
        )


def security(settings: Settings) -> Security | None:
    """The Dask ``Security`` of a client (zhuge's scheduler), or None without TLS settings."""
    files = _files(settings)
    if files is None:
        return None
    ca, cert, key = files
    return Security(
        tls_ca_file=ca, tls_client_cert=cert, tls_client_key=key, require_encryption=True
    )


def worker_arguments(settings: Settings) -> list[str]:
    """``dask worker``'s options for the same certificate (none without TLS settings)."""
    files = _files(settings)
    if files is None:
        return []
    ca, cert, key = files
    return ["--tls-ca-file", ca, "--tls-cert", cert, "--tls-key", key]
