"""`python -m gateway [COMMAND]`: serve (the default), or an admin command. `--help` lists
them all, the configuration files and every environment variable the gateway reads.

Each command is one row of COMMANDS: its help line and a function taking the command's own
arguments (it parses them itself, so `python -m gateway COMMAND --help` is its own)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from gateway.admin import CommandFailed
from gateway.errors import ConfigFileError


def _serve(argv: list[str]) -> int | None:
    from gateway.server import run

    if argv in (["-h"], ["--help"]):
        print("usage: python -m gateway [serve]\n\nRun the gateway until SIGINT or SIGTERM "
              "(python -m gateway --help: the files and environment it reads).")
        return 0
    if argv:
        print(f"python -m gateway serve: no arguments expected, got {' '.join(argv)!r}",
              file=sys.stderr)
        return 2
    return run() or 0  # several workers: the supervising parent's status


def _admin(command: str) -> Callable[[list[str]], int | None]:
    def run(argv: list[str]) -> int | None:
        from gateway.admin import main as admin_main

        return admin_main([command, *argv])

    return run


def _fsck(argv: list[str]) -> int | None:
    from gateway.objects.fsck import main as fsck_main

    return fsck_main(argv)


def _lifecycle(argv: list[str]) -> int | None:
    from gateway.lifecycle.cli import main as lifecycle_main

    return lifecycle_main(argv)


def _accounts(argv: list[str]) -> int | None:
    from gateway.accounts import main as accounts_main

    return accounts_main(argv)


def _migrate(argv: list[str]) -> int | None:
    from gateway.moving.cli import main as migrate_main

    return migrate_main(argv)


def _import(argv: list[str]) -> int | None:
    from gateway.moving.importer import main as import_main

    return import_main(argv)


def _read_through(argv: list[str]) -> int | None:
    from gateway.moving.read_through import main as read_through_main

    return read_through_main(argv)


def _keys(argv: list[str]) -> int | None:
    from gateway.crypto.admin import main as keys_main

    return keys_main(argv)


# name -> (help line, run(argv) -> exit status). Add a command here, one row.
COMMANDS: dict[str, tuple[str, Callable[[list[str]], int | None]]] = {
    "serve": ("run the gateway (the default when no command is given)", _serve),
    "locations": ("every location of a running gateway: type, state, last check, latency, "
                  "last error [--endpoint URL]", _admin("locations")),
    "check": ("run one location's health check now: check LOCATION [--endpoint URL]",
              _admin("check")),
    "fsck": ("check metadata against the data on every location [--repair] [--json] "
             "[--location NAME]", _fsck),
    "lifecycle": ("run one lifecycle pass of a bucket now in the running gateway: "
                  "lifecycle run BUCKET [--endpoint URL]", _lifecycle),
    "accounts": ("accounts and access keys at runtime: add | list | add-key | disable-key | "
                 "enable-key | remove-key | remove", _accounts),
    "migrate": ("move a bucket to another location while in use: migrate BUCKET --to LOCATION "
                "[--keep-source] [--detach] | --status [BUCKET] | --cancel BUCKET", _migrate),
    "import": ("make what a location's container already holds objects of a bucket, without "
               "copying: import LOCATION BUCKET [--prefix P] [--owner ACCOUNT]", _import),
    "keys": ("the encryption keyring (SSE-S3/SSE-KMS master keys): list | create [KEY_ID] | "
             "rotate [KEY_ID]", _keys),
    "read-through": ("serve a bucket's misses from a source location, copying on first read: "
                     "read-through BUCKET --source LOCATION [--prefix P] [--drain] | --off",
                     _read_through),
}

FILES = """\
configuration files (looked up in ./conf/, then ./, then the repository):
  config.json          port, listenOn, restEndpoints, metadata, healthChecks, metricsPort,
                       certFilePaths {key, cert, ca} (TLS), accounts, storage, connections
                       lifecycle, jobs, storageClasses (README: Lifecycle and tiering)
  locationConfig.json  the locations (us-east-1 must exist)
  conf/authdata.json   the seed accounts and keys (more at runtime: `accounts`)
  localKeys/master.key beside the metadata folder: seals runtime keys' secrets (made 0600)
"""

# Every variable the gateway reads (tests/health/test_startup.py checks this against the code).
ENVIRONMENT = """\
environment variables:
  S3_CONFIG_FILE, S3_LOCATION_FILE, S3AUTH_CONFIG   paths of the three files above
  S3PORT, LISTEN_ADDR        the S3 port and listen address (config.json port, listenOn)
  ENDPOINT                   one more restEndpoints host (to us-east-1)
  S3_REGION                  the region clients sign for (config.json region, us-east-1)
  LOG_LEVEL                  debug | info | warning | error (info: one JSON line per request)
  S3DATAPATH                 file locations' folder (./localData)
  S3METADATA                 sqlite | postgres;  S3METADATAPATH: the SQLite folder (./localMetadata)
  S3METADATA_DSN             postgresql://user:password@host:port/database
  S3BACKEND                  mem | file: the type of the us-east-1 location
  S3DURABILITY               durable | relaxed (config.json storage.durability)
  S3_WORKERS                 processes serving the ports: a number or auto (config.json workers)
  PROMETHEUS_MULTIPROC_DIR   set by the workers' parent for its workers (metrics summed)
  S3_TLS_KEY_FILE, S3_TLS_CERT_FILE, S3_TLS_CA_FILE   TLS on every listener (certFilePaths)
  S3_MASTER_KEY_FILE         the accounts' master key file (accounts.masterKeyFile)
  S3_SSE_KEYRING_FILE        server-side encryption keyring (config.json encryption.keyringFile)
  SCALITY_ACCESS_KEY_ID, SCALITY_SECRET_ACCESS_KEY    one account replacing authdata.json
  per location NAME (credentials that stay out of locationConfig.json):
    NAME_AWS_ACCESS_KEY_ID, NAME_AWS_SECRET_ACCESS_KEY; AWS_PROFILE,
    AWS_SHARED_CREDENTIALS_FILE, HOME (~/.aws/credentials), AWS_CA_BUNDLE    aws_s3
    NAME_AZURE_STORAGE_ENDPOINT, NAME_AZURE_STORAGE_ACCOUNT_NAME,
    NAME_AZURE_STORAGE_ACCESS_KEY, NAME_AZURE_SAS_TOKEN, NAME_AZURE_TENANT_ID,
    NAME_AZURE_CLIENT_ID, NAME_AZURE_CLIENT_KEY, NAME_AZURE_AUTH_METHOD      azure
    NAME_GCP_SERVICE_KEYFILE, NAME_GCP_SERVICE_EMAIL, NAME_GCP_SERVICE_KEY   gcp
    NAME_B2_APPLICATION_KEY_ID, NAME_B2_APPLICATION_KEY                      b2
    NAME_SWIFT_KEY                                                           swift
"""


def version() -> str:
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as package_version

    try:
        return package_version("s3-multicloud-gateway")
    except PackageNotFoundError:  # run from a checkout that was never installed
        return "unknown (not installed: pip install -e .)"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m gateway", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="One S3 endpoint in front of many clouds. With no command, serves S3 "
        "(config.json's port, 8000 by default). `python -m gateway COMMAND --help` for a "
        "command's options.",
        epilog=FILES + "\n" + ENVIRONMENT + "\nREADME.md has a quick start for each S3 client.")
    parser.add_argument("--version", action="version",
                        version=f"s3-multicloud-gateway {version()}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (help_line, _) in COMMANDS.items():
        commands.add_parser(name, help=help_line, add_help=False)
    return parser


def flush_logging() -> None:
    from gateway.server import flush_logging as flush

    flush()


def main() -> None:
    args = sys.argv[1:]
    if args and args[0] not in COMMANDS:
        # --help, --version, or an unknown command: argparse says it (exit 0 or 2).
        build_parser().parse_args(args)
        args = args[1:]  # only options argparse accepted and did nothing with
    name, rest = (args[0], args[1:]) if args else ("serve", [])
    try:
        status = COMMANDS[name][1](rest)
        if status:
            sys.exit(status)
    except ConfigFileError as err:
        flush_logging()
        print(f"gateway: bad config: {err}", file=sys.stderr)
        sys.exit(2)
    except CommandFailed as err:
        print(err, file=sys.stderr)
        sys.exit(err.exit_code)
    except Exception as err:
        from gateway.server import StartupError

        if not isinstance(err, StartupError):
            raise
        flush_logging()
        print(f"gateway: cannot start: {err}", file=sys.stderr)
        sys.exit(err.exit_code)
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
