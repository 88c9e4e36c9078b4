"""Moving data between locations without downtime (issue 17): online bucket migration
(migrate.py; `python -m gateway migrate`, cli.py)."""

from gateway.moving.migrate import Migrations

__all__ = ["Migrations"]
