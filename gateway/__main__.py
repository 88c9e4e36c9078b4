"""`python -m gateway` serves; `python -m gateway locations|check LOCATION` are admin commands
against a running gateway; `python -m gateway fsck [--repair]` checks metadata against data."""

from __future__ import annotations

import sys

from gateway.errors import ConfigFileError


def flush_logging() -> None:
    from gateway.server import flush_logging as flush

    flush()


def main() -> None:
    args = sys.argv[1:]
    try:
        if not args or args[0] == "serve":
            from gateway.server import run

            run()
        elif args[0] == "fsck":
            from gateway.objects.fsck import main as fsck_main

            sys.exit(fsck_main(args[1:]))
        else:
            from gateway.admin import main as admin_main

            sys.exit(admin_main(args))
    except ConfigFileError as err:
        flush_logging()
        print(f"gateway: bad config: {err}", file=sys.stderr)
        sys.exit(2)
    except Exception as err:
        from gateway.server import StartupError

        if not isinstance(err, StartupError):
            raise
        flush_logging()
        print(f"gateway: cannot start: {err}", file=sys.stderr)
        sys.exit(3)
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
