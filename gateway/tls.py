"""TLS for the gateway's listeners (config.json "certFilePaths", as CloudServer names them).

One server context serves every listener (S3, health/metrics, console): the same name is
reached on each. `ca` (optional) holds the CA certificate(s) that complete the chain sent to
clients when `cert` holds only the server's own certificate: OpenSSL builds the chain from it.
Client certificates are not requested.
"""

from __future__ import annotations

import ssl

from gateway.config import Settings, TlsFiles
from gateway.errors import ConfigFileError


def _where(settings: Settings, tls: TlsFiles, name: str) -> tuple[str, str]:
    origin = tls.origin.get(name, f"certFilePaths.{name}")
    if origin.startswith("S3_"):
        return "environment", origin
    return str(settings.config_path or "config.json"), f'key "{origin}"'


def server_context(settings: Settings) -> ssl.SSLContext | None:
    """The listeners' TLS context, or None for plain http. A file that is not a usable PEM
    certificate or key raises ConfigFileError naming the setting and the file."""
    tls = settings.tls
    if tls is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if tls.ca is not None:
        try:
            context.load_verify_locations(cafile=str(tls.ca))
        except (ssl.SSLError, OSError, ValueError) as exc:
            file, where = _where(settings, tls, "ca")
            raise ConfigFileError(file, where, f"{tls.ca}: not a PEM CA certificate "
                                  f"({_reason(exc)})") from None
    try:
        context.load_cert_chain(certfile=str(tls.cert), keyfile=str(tls.key))
    except (ssl.SSLError, OSError) as exc:
        # OpenSSL tells which half failed: a certificate (PEM lib on the cert) or the key.
        reason = _reason(exc)
        name = "key" if "KEY" in reason.upper() and "CERTIFICATE" not in reason.upper() else "cert"
        file, where = _where(settings, tls, name)
        path = tls.key if name == "key" else tls.cert
        raise ConfigFileError(file, where, f"{path}: cannot use it for TLS ({reason}; "
                              f"cert {tls.cert}, key {tls.key})") from None
    return context


def _reason(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLError) and exc.reason:
        return str(exc.reason)
    return " ".join(str(exc).split()) or type(exc).__name__


def scheme(settings: Settings) -> str:
    return "https" if settings.tls is not None else "http"
