"""Loading and validating config.json and locationConfig.json (authdata: gateway.accounts).

Every mistake raises ConfigFileError: one line naming the file, where in it, and what is wrong.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gateway.errors import ConfigFileError
from gateway.jobs.runner import JobSettings  # background jobs
from gateway.lifecycle.settings import LifecycleSettings  # lifecycle

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_LOCATION = "us-east-1"
LOCATION_TYPES = ("mem", "file", "aws_s3", "azure", "gcp", "b2", "swift", "mirror")


@dataclass(frozen=True)
class LocationSpec:
    name: str
    type: str
    legacy_aws_behavior: bool
    details: dict[str, Any]
    object_id: str
    # Whether any writer may pick this location with x-amz-meta-scal-location-constraint. The
    # operator's decision: by default a header may only name the bucket's own location.
    selectable: bool = False

    @property
    def bucket_match(self) -> bool:
        return bool(self.details.get("bucketMatch", False))


@dataclass(frozen=True)
class HealthSettings:
    interval: float = 30.0
    timeout: float = 5.0
    startup: str = "degraded"  # or "strict": refuse to start while a location is down
    allow_from: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()


@dataclass(frozen=True)
class StorageSettings:
    """How hard the gateway works to keep acknowledged data (config.json "storage")."""

    # "durable" (default): file data and its directory are fsynced and SQLite commits with
    # synchronous=FULL before a write is acknowledged. "relaxed": neither (faster; an OS crash
    # or power loss may lose the last acknowledged writes; a gateway crash loses nothing).
    durability: str = "durable"
    # The collector removes bytes no record references; it runs every `collectInterval` s.
    collect_interval: float = 10.0
    # Intents (writes in flight) older than this are taken as left by a crashed gateway and
    # their bytes collected. Must exceed the longest single PUT or part upload.
    intent_grace: float = 6 * 3600.0
    # Replaced bytes stay this long before the collector removes them, so a GET that read the
    # old record just before an overwrite or delete still streams every piece of it.
    read_grace: float = 30.0


@dataclass(frozen=True)
class ConnectionSettings:
    """Limits on client connections (config.json "connections"): slow or silent clients must
    not hold sockets and file descriptors the gateway needs for its own storage calls."""

    max_open: int = 1000  # more are answered 503 SlowDown and closed at once
    header_timeout: float = 30.0  # s to receive a request's headers, once its first byte came
    idle_timeout: float = 60.0  # s a keep-alive connection may wait for its next request
    # s without a byte while a request body is read, or an answer sent (a stalled download)
    body_timeout: float = 60.0


@dataclass(frozen=True)
class ConsoleSettings:
    """The web console (config.json "console"; gateway/console/)."""

    enabled: bool = True  # served at /_/console/ on the S3 port (and on `port` when set)
    port: int = 0  # a listener of its own as well; 0: none
    session_minutes: float = 30.0  # a session ends after this long without a request


@dataclass
class Settings:
    port: int
    listen_on: str
    rest_endpoints: dict[str, str]
    locations: dict[str, LocationSpec]
    metadata_backend: str
    metadata_path: Path
    postgres_dsn: str | None
    authdata_path: Path
    health: HealthSettings
    log_level: str
    metrics_port: int
    storage: StorageSettings = field(default_factory=StorageSettings)
    connections: ConnectionSettings = field(default_factory=ConnectionSettings)
    # The region SigV4 requests must be signed for ("region"; "*": any region).
    region: str = DEFAULT_LOCATION
    console: ConsoleSettings = field(default_factory=ConsoleSettings)
    env: dict[str, str] = field(default_factory=dict)
    config_path: Path | None = None
    location_path: Path | None = None
    # --- operating it (TLS, accounts at runtime): gateway/tls.py, gateway/accounts.py ---
    tls: TlsFiles | None = None  # None: plain http on every listener
    master_key_path: Path = Path("./localKeys/master.key")
    accounts_refresh: float = 1.0  # s between checks of the store's account change counter
    # --- background jobs, lifecycle and tiering (gateway/jobs/, gateway/lifecycle/) ---
    jobs: JobSettings = field(default_factory=lambda: JobSettings())
    lifecycle: LifecycleSettings = field(default_factory=lambda: LifecycleSettings())
    storage_classes: dict[str, str] = field(default_factory=dict)  # class -> location name
    # --- encryption at rest (gateway/crypto/) ---
    encryption: EncryptionSettings = field(default_factory=lambda: EncryptionSettings())
    # --- several worker processes sharing the ports (gateway/workers.py) ---
    workers: int = 1
    # --- read-through buckets (gateway/moving/read_through.py): bucket -> Source ---
    read_through: dict[str, Any] = field(default_factory=dict)

    def local_url(self) -> str:
        """The S3 listener as a command on this machine reaches it (admin commands)."""
        host = "127.0.0.1" if self.listen_on in ("0.0.0.0", "::") else self.listen_on
        return f"{'https' if self.tls else 'http'}://{host}:{self.port}"


# --- operating it: listeners, TLS, accounts (see gateway/tls.py, gateway/accounts.py) -------
@dataclass(frozen=True)
class TlsFiles:
    """config.json "certFilePaths" as CloudServer names them (or S3_TLS_*_FILE): the server's
    private key and certificate (PEM), and optionally the CA certificate(s) completing the
    chain sent to clients."""

    key: Path
    cert: Path
    ca: Path | None
    # Where each path was set, for one-line errors: "certFilePaths.key" or "S3_TLS_KEY_FILE".
    origin: dict[str, str] = field(default_factory=dict, compare=False)


TLS_ENV = {"key": "S3_TLS_KEY_FILE", "cert": "S3_TLS_CERT_FILE", "ca": "S3_TLS_CA_FILE"}


def load_port(data: dict[str, Any], file: str, key: str, env: Mapping[str, str],
              env_name: str | None, default: int, allow_zero: bool = False) -> int:
    """A TCP port from the environment or config.json, refused with one line naming where."""
    raw: Any = env.get(env_name) if env_name else None
    where, source = (env_name, "environment") if raw else (f'key "{key}"', file)
    if not raw:
        raw = data.get(key, default)
    if isinstance(raw, str) and raw.strip().isdigit():
        raw = int(raw)
    if isinstance(raw, bool) or not isinstance(raw, int) or not (
            (allow_zero and raw == 0) or 1 <= raw <= 65535):
        span = "0 (off) or 1..65535" if allow_zero else "1..65535"
        raise ConfigFileError(source, where or "", f"must be a TCP port number, {span}, "
                              f"got {raw!r}")
    return raw


def load_tls(data: dict[str, Any], file: str, env: Mapping[str, str]) -> TlsFiles | None:
    raw = _get(data, file, "certFilePaths", dict, {})
    paths: dict[str, Path] = {}
    origin: dict[str, str] = {}
    for name in ("key", "cert", "ca"):
        value = env.get(TLS_ENV[name]) or raw.get(name)
        origin[name] = TLS_ENV[name] if env.get(TLS_ENV[name]) else f"certFilePaths.{name}"
        if value is None:
            continue
        if not isinstance(value, str) or not value:
            raise ConfigFileError(file, f'key "certFilePaths.{name}"', "must be a file path")
        path = Path(value)
        if not path.is_absolute() and origin[name].startswith("certFilePaths"):
            # Relative to config.json's folder, as CloudServer's ./test.key examples expect
            # when started from there; absolute paths are taken as they are.
            path = Path(file).resolve().parent / path
        paths[name] = path
    unknown = sorted(set(raw) - {"key", "cert", "ca"})
    if unknown:
        raise ConfigFileError(file, f'key "certFilePaths.{unknown[0]}"', "is unknown (key, cert, ca)")
    if not paths:
        return None
    for name in ("key", "cert"):
        if name not in paths:
            raise ConfigFileError(file, f'key "certFilePaths.{name}"',
                                  f"is required for TLS (or set {TLS_ENV[name]})")
    tls = TlsFiles(key=paths["key"], cert=paths["cert"], ca=paths.get("ca"), origin=origin)
    for name, path in (("key", tls.key), ("cert", tls.cert), ("ca", tls.ca)):
        if path is None:
            continue
        try:
            with open(path, "rb") as handle:
                handle.read(1)
        except OSError as exc:
            where = origin[name]
            source = "environment" if where.startswith("S3_") else file
            label = where if where.startswith("S3_") else f'key "{where}"'
            raise ConfigFileError(source, label,
                                  f"cannot read {path}: {exc.strerror or exc}") from None
    return tls


def find_file(name: str, override: str | None) -> Path:
    if override:
        return Path(override)
    for candidate in (Path.cwd() / "conf" / name, Path.cwd() / name,
                      REPO_ROOT / "conf" / name, REPO_ROOT / name):
        if candidate.is_file():
            return candidate
    return Path(name)


def read_json(path: Path) -> Any:
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigFileError(str(path), "", f"cannot read: {exc.strerror}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigFileError(str(path), f"line {exc.lineno} column {exc.colno}",
                              f"invalid JSON: {exc.msg}") from None


def load_locations(path: Path, env: Mapping[str, str]) -> dict[str, LocationSpec]:
    """Parse locationConfig.json; the details are validated by each translator when built."""
    data = read_json(path)
    file = str(path)
    if not isinstance(data, dict) or not data:
        raise ConfigFileError(file, "", "must be a JSON object of location name -> location")
    locations: dict[str, LocationSpec] = {}
    object_ids: set[str] = set()
    for name, raw in data.items():
        if not isinstance(raw, dict):
            raise ConfigFileError(file, f'location "{name}"', "must be an object")
        kind = raw.get("type")
        if kind not in LOCATION_TYPES:
            raise ConfigFileError(file, f'location "{name}" key "type"',
                                  f"must be one of {', '.join(LOCATION_TYPES)}, got {kind!r}")
        if name == DEFAULT_LOCATION and env.get("S3BACKEND") in ("mem", "file"):
            kind = env["S3BACKEND"]
        legacy = raw.get("legacyAwsBehavior", False)
        if not isinstance(legacy, bool):
            raise ConfigFileError(file, f'location "{name}" key "legacyAwsBehavior"',
                                  "must be true or false")
        details = raw.get("details", {})
        if not isinstance(details, dict):
            raise ConfigFileError(file, f'location "{name}" key "details"', "must be an object")
        if kind != raw.get("type"):  # S3BACKEND replaced the type: its details are another's
            details = {k: v for k, v in details.items() if k == "bucketMatch"}
        object_id = raw.get("objectId", name)
        if not isinstance(object_id, str) or object_id in object_ids:
            raise ConfigFileError(file, f'location "{name}" key "objectId"',
                                  "must be a string unique across locations")
        object_ids.add(object_id)
        bucket_match = details.get("bucketMatch", False)
        if not isinstance(bucket_match, bool):
            raise ConfigFileError(file, f'location "{name}" key "details.bucketMatch"',
                                  "must be true or false")
        selectable = raw.get("selectable", False)
        if not isinstance(selectable, bool):
            raise ConfigFileError(file, f'location "{name}" key "selectable"',
                                  "must be true or false")
        locations[name] = LocationSpec(name, kind, legacy, details, object_id, selectable)
    if DEFAULT_LOCATION not in locations:
        raise ConfigFileError(file, f'location "{DEFAULT_LOCATION}"',
                              "is required (the default location)")
    return locations


def _get(data: dict[str, Any], file: str, key: str, kind: type | tuple[type, ...],
         default: Any) -> Any:
    value = data.get(key, default)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ConfigFileError(file, f'key "{key}"', f"has the wrong type ({value!r})")
    return value


def load_connection_settings(data: dict[str, Any], file: str) -> ConnectionSettings:
    raw = _get(data, file, "connections", dict, {})
    defaults = ConnectionSettings()
    values: dict[str, float] = {}
    for key, default in (("maxOpen", defaults.max_open), ("headerTimeout", defaults.header_timeout),
                         ("idleTimeout", defaults.idle_timeout),
                         ("bodyTimeout", defaults.body_timeout)):
        value = raw.get(key, default)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0 or \
                (key == "maxOpen" and not isinstance(value, int)):
            kind = "a positive integer" if key == "maxOpen" else "a positive number of seconds"
            raise ConfigFileError(file, f'key "connections.{key}"', f"must be {kind}")
        values[key] = value
    unknown = sorted(set(raw) - set(values))
    if unknown:
        raise ConfigFileError(file, f'key "connections.{unknown[0]}"',
                              "is unknown (maxOpen, headerTimeout, idleTimeout, bodyTimeout)")
    return ConnectionSettings(max_open=int(values["maxOpen"]),
                              header_timeout=float(values["headerTimeout"]),
                              idle_timeout=float(values["idleTimeout"]),
                              body_timeout=float(values["bodyTimeout"]))


def load_console_settings(data: dict[str, Any], file: str) -> ConsoleSettings:
    raw = _get(data, file, "console", dict, {})
    unknown = sorted(set(raw) - {"enabled", "port", "sessionMinutes"})
    if unknown:
        raise ConfigFileError(file, f'key "console.{unknown[0]}"',
                              "is unknown (enabled, port, sessionMinutes)")
    enabled = raw.get("enabled", True)
    if not isinstance(enabled, bool):
        raise ConfigFileError(file, 'key "console.enabled"', "must be true or false")
    port = raw.get("port", 0)
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise ConfigFileError(file, 'key "console.port"',
                              f"must be a TCP port number, 0 (none) or 1..65535, got {port!r}")
    minutes = raw.get("sessionMinutes", 30)
    if isinstance(minutes, bool) or not isinstance(minutes, (int, float)) \
            or not 0 < minutes <= 24 * 60:
        raise ConfigFileError(file, 'key "console.sessionMinutes"',
                              "must be a number of minutes, more than 0 and at most 1440")
    return ConsoleSettings(enabled=enabled, port=port, session_minutes=float(minutes))


def load_settings(env: Mapping[str, str]) -> Settings:
    env = dict(env)
    config_path = find_file("config.json", env.get("S3_CONFIG_FILE"))
    location_path = find_file("locationConfig.json", env.get("S3_LOCATION_FILE"))
    authdata_path = find_file("authdata.json", env.get("S3AUTH_CONFIG"))
    data = read_json(config_path)
    file = str(config_path)
    if not isinstance(data, dict):
        raise ConfigFileError(file, "", "must be a JSON object")
    locations = load_locations(location_path, env)

    port = load_port(data, file, "port", env, "S3PORT", 8000)
    listen_on = env.get("LISTEN_ADDR") or _get(data, file, "listenOn", str, "127.0.0.1") or "0.0.0.0"
    endpoints = _get(data, file, "restEndpoints", dict, {"localhost": DEFAULT_LOCATION})
    if env.get("ENDPOINT"):
        endpoints = {**endpoints, env["ENDPOINT"]: endpoints.get(env["ENDPOINT"], DEFAULT_LOCATION)}
    for host, location in endpoints.items():
        if location not in locations:
            raise ConfigFileError(file, f'key "restEndpoints.{host}"',
                                  f'names location "{location}", which {location_path} lacks')

    meta = _get(data, file, "metadata", dict, {})
    backend = env.get("S3METADATA") or meta.get("backend", "sqlite")
    if backend not in ("sqlite", "postgres"):
        raise ConfigFileError(file, 'key "metadata.backend"', "must be sqlite or postgres")
    metadata_path = Path(env.get("S3METADATAPATH") or meta.get("path") or "./localMetadata")
    dsn = env.get("S3METADATA_DSN") or meta.get("dsn")
    if backend == "postgres" and not dsn:
        raise ConfigFileError(file, 'key "metadata.dsn"', "is required with the postgres backend")

    health_raw = _get(data, file, "healthChecks", dict, {})
    try:
        allow = tuple(ipaddress.ip_network(net, strict=False)
                      for net in [*health_raw.get("allowFrom", []), "127.0.0.0/8", "::1/128"])
    except ValueError as exc:
        raise ConfigFileError(file, 'key "healthChecks.allowFrom"', str(exc)) from None
    startup = health_raw.get("startup", "degraded")
    if startup not in ("degraded", "strict"):
        raise ConfigFileError(file, 'key "healthChecks.startup"', "must be degraded or strict")
    health = HealthSettings(interval=float(health_raw.get("interval", 30)),
                            timeout=float(health_raw.get("timeout", 5)),
                            startup=startup, allow_from=allow)
    storage_raw = _get(data, file, "storage", dict, {})
    durability = env.get("S3DURABILITY") or storage_raw.get("durability", "durable")
    if durability not in ("durable", "relaxed"):
        raise ConfigFileError(file, 'key "storage.durability"', "must be durable or relaxed")
    storage_numbers: dict[str, float] = {}
    for key, default, least in (("collectInterval", 10.0, 0), ("intentGraceSeconds", 6 * 3600.0, 0),
                                ("readGraceSeconds", 30.0, None)):
        value = storage_raw.get(key, default)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0 \
                or value == least:
            raise ConfigFileError(file, f'key "storage.{key}"',
                                  "must be a positive number" if least == 0
                                  else "must be a number of seconds, 0 or more")
        storage_numbers[key] = float(value)
    storage = StorageSettings(durability=durability,
                              collect_interval=storage_numbers["collectInterval"],
                              intent_grace=storage_numbers["intentGraceSeconds"],
                              read_grace=storage_numbers["readGraceSeconds"])
    connections = load_connection_settings(data, file)
    return Settings(
        port=port,
        listen_on=listen_on,
        rest_endpoints=endpoints,
        locations=locations,
        metadata_backend=backend,
        metadata_path=metadata_path,
        postgres_dsn=dsn,
        authdata_path=authdata_path,
        health=health,
        log_level=(env.get("LOG_LEVEL") or data.get("logLevel") or "info").upper(),
        metrics_port=load_port(data, file, "metricsPort", env, None, 0, allow_zero=True),
        storage=storage,
        connections=connections,
        region=_signing_region(data, file, env),
        console=load_console_settings(data, file),
        env=env,
        config_path=config_path,
        location_path=location_path,
        tls=load_tls(data, file, env),
        # Default: localKeys/ beside the SQLite folder (./localKeys with ./localMetadata).
        master_key_path=Path(env.get("S3_MASTER_KEY_FILE")
                             or _get(data, file, "accounts", dict, {}).get("masterKeyFile")
                             or metadata_path.parent / "localKeys" / "master.key"),
        accounts_refresh=_accounts_refresh(data, file),
        jobs=load_job_settings(data, file),
        lifecycle=load_lifecycle_settings(data, file),
        storage_classes=load_storage_classes(data, file, locations, location_path),
        encryption=load_encryption_settings(data, file, env, metadata_path),
        workers=load_workers(data, file, env, locations, location_path),
        read_through=_read_through(data.get("readThrough"), file, locations),
    )


# --- several worker processes (gateway/workers.py) --------------------------------------------
def load_workers(data: dict[str, Any], file: str, env: Mapping[str, str],
                 locations: dict[str, LocationSpec], location_path: Path) -> int:
    """config.json "workers" (or S3_WORKERS): how many processes serve the ports; "auto" is
    the number of cores this process may run on. Default 1."""
    import os

    raw: Any = env.get("S3_WORKERS") or data.get("workers", 1)
    source, where = ("environment", "S3_WORKERS") if env.get("S3_WORKERS") else \
        (file, 'key "workers"')
    if raw == "auto":
        raw = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") \
            else os.cpu_count() or 1
    elif isinstance(raw, str) and raw.strip().isdigit():
        raw = int(raw)
    if isinstance(raw, bool) or not isinstance(raw, int) or not 1 <= raw <= 256:
        raise ConfigFileError(source, where, f'must be a number of processes, 1..256, or '
                              f'"auto", got {raw!r}')
    if raw > 1:
        from gateway.translators import translator_class  # (imports every translator's deps)

        for name, spec in locations.items():
            if not translator_class(spec.type).shared_across_processes:
                raise ConfigFileError(str(location_path), f'location "{name}" key "type"',
                                      f"{spec.type} keeps objects in one process's memory: "
                                      f"not possible with {raw} workers ({where})")
    return raw


def _signing_region(data: dict[str, Any], file: str, env: Mapping[str, str]) -> str:
    """config.json "region" (or S3_REGION): what clients must sign SigV4 requests for, as
    AWS insists on a bucket's region; "*" accepts every region name."""
    value = env.get("S3_REGION") or data.get("region", DEFAULT_LOCATION)
    if not isinstance(value, str) or not value.strip() or not value.isascii():
        raise ConfigFileError(file, 'key "region"', 'must be a region name, or "*" for any')
    return value.strip()


def _accounts_refresh(data: dict[str, Any], file: str) -> float:
    raw = _get(data, file, "accounts", dict, {})
    unknown = sorted(set(raw) - {"masterKeyFile", "refreshSeconds"})
    if unknown:
        raise ConfigFileError(file, f'key "accounts.{unknown[0]}"',
                              "is unknown (masterKeyFile, refreshSeconds)")
    if not isinstance(raw.get("masterKeyFile", ""), str):
        raise ConfigFileError(file, 'key "accounts.masterKeyFile"', "must be a file path")
    value = raw.get("refreshSeconds", 1.0)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 300:
        raise ConfigFileError(file, 'key "accounts.refreshSeconds"',
                              "must be a number of seconds, more than 0 and at most 300")
    return float(value)


# --- background jobs, lifecycle and tiering (gateway/jobs/, gateway/lifecycle/) ---------------
def _numbers(raw: dict[str, Any], file: str, section: str,
             keys: tuple[tuple[str, float, bool], ...]) -> dict[str, float]:
    """Positive numbers of one section (key, default, integer?); unknown keys refused."""
    values: dict[str, float] = {}
    for key, default, integer in keys:
        value = raw.get(key, default)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0 or \
                (integer and not isinstance(value, int)):
            kind = "a positive integer" if integer else "a positive number of seconds"
            raise ConfigFileError(file, f'key "{section}.{key}"', f"must be {kind}")
        values[key] = value
    unknown = sorted(set(raw) - set(values))
    if unknown:
        raise ConfigFileError(file, f'key "{section}.{unknown[0]}"',
                              f"is unknown ({', '.join(k for k, _, _ in keys)})")
    return values


def load_job_settings(data: dict[str, Any], file: str) -> JobSettings:
    d = JobSettings()
    v = _numbers(_get(data, file, "jobs", dict, {}), file, "jobs", (
        ("concurrency", d.concurrency, True), ("leaseSeconds", d.lease, False),
        ("pollSeconds", d.poll, False), ("maxAttempts", d.max_attempts, True)))
    return JobSettings(concurrency=int(v["concurrency"]), lease=float(v["leaseSeconds"]),
                       poll=float(v["pollSeconds"]), max_attempts=int(v["maxAttempts"]))


def load_lifecycle_settings(data: dict[str, Any], file: str) -> LifecycleSettings:
    d = LifecycleSettings()
    v = _numbers(_get(data, file, "lifecycle", dict, {}), file, "lifecycle", (
        ("dayLengthSeconds", d.day, False), ("scanIntervalSeconds", d.scan_interval, False)))
    return LifecycleSettings(day=float(v["dayLengthSeconds"]),
                             scan_interval=float(v["scanIntervalSeconds"]))


def load_storage_classes(data: dict[str, Any], file: str, locations: dict[str, LocationSpec],
                         location_path: Path) -> dict[str, str]:
    """"storageClasses": {"STANDARD_IA": "<location>", ...}: where a lifecycle transition to
    that class moves an object's bytes."""
    from gateway.lifecycle.rules import STORAGE_CLASSES

    raw = _get(data, file, "storageClasses", dict, {})
    for name, location in raw.items():
        if name not in STORAGE_CLASSES:
            raise ConfigFileError(file, f'key "storageClasses.{name}"',
                                  f"is not a storage class ({', '.join(STORAGE_CLASSES)})")
        if not isinstance(location, str) or location not in locations:
            raise ConfigFileError(file, f'key "storageClasses.{name}"',
                                  f"names location {location!r}, which {location_path} lacks")
    return dict(raw)


# --- encryption at rest (gateway/crypto/) -----------------------------------------------------
@dataclass(frozen=True)
class EncryptionSettings:
    """config.json "encryption": where the embedded KMS keeps its keyring, and whether SSE-C
    keys may come over plain http (AWS takes them only over TLS)."""

    keyring_path: Path = Path("./localKeys/sse-keyring.json")
    allow_sse_c_over_http: bool = False


def load_encryption_settings(data: dict[str, Any], file: str, env: Mapping[str, str],
                             metadata_path: Path) -> EncryptionSettings:
    raw = _get(data, file, "encryption", dict, {})
    unknown = sorted(set(raw) - {"keyringFile", "allowSseCOverHttp"})
    if unknown:
        raise ConfigFileError(file, f'key "encryption.{unknown[0]}"',
                              "is unknown (keyringFile, allowSseCOverHttp)")
    path = env.get("S3_SSE_KEYRING_FILE") or raw.get("keyringFile")
    if path is not None and (not isinstance(path, str) or not path):
        raise ConfigFileError(file, 'key "encryption.keyringFile"', "must be a file path")
    allow = raw.get("allowSseCOverHttp", False)
    if not isinstance(allow, bool):
        raise ConfigFileError(file, 'key "encryption.allowSseCOverHttp"', "must be true or false")
    # Default: localKeys/ beside the SQLite folder, next to the accounts' master key.
    return EncryptionSettings(
        keyring_path=Path(path) if path else metadata_path.parent / "localKeys" / "sse-keyring.json",
        allow_sse_c_over_http=allow)


def _read_through(raw: Any, file: str, locations: dict[str, LocationSpec]) -> dict[str, Any]:
    """config.json "readThrough" (gateway/moving/read_through.py checks it)."""
    from gateway.moving.read_through import parse_config

    return parse_config(raw, file, locations)
