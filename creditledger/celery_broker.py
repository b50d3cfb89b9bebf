"""kombu's SQLAlchemy transport, polling ten times a second instead of once (docs/adr/0009).

kombu hands every option of this transport to SQLAlchemy's `create_engine`, so the polling
interval cannot be given as a transport option; it is a class attribute here. URLs with the
scheme `sqlapoll+<SQLAlchemy URL>` select this transport."""

from kombu.transport import TRANSPORT_ALIASES
from kombu.transport.sqlalchemy import Transport as SQLAlchemyTransport

SCHEME = "sqlapoll"


class Transport(SQLAlchemyTransport):
    polling_interval = 0.1


def transport_register() -> None:
    """Let kombu resolve `sqlapoll+...` URLs (kombu has no other way to add a URL scheme)."""
    TRANSPORT_ALIASES.setdefault(SCHEME, f"{__name__}:Transport")
