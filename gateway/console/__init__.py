"""The web console (/_/console/): see gateway/console/app.py."""

from gateway.console.app import Console, internal_endpoint

__all__ = ["Console", "internal_endpoint"]
