"""Who did it (issue 12): every write records its actor, the string the columns named `actor`
and the events' envelopes carry.

- `key:<id>`: a request with an API key (LEDGER_AUTH=required);
- `user:<username>`: an admin user (the admin, or any request with an admin session);
- `anonymous`: an HTTP request without either (LEDGER_AUTH=off);
- `system`: the ledger's own bookings (hold and grant expiries, beat tasks, management
  commands), which run outside any request.

The request's actor lives in a context variable; in_durable_transaction hands it to
PostgreSQL as the transaction-local setting `ledger.actor`, which the columns' default
(SQL function write_actor()) and the envelope builder (outbox_event_row) read."""

from __future__ import annotations

import re
from collections.abc import Callable
from contextvars import ContextVar

from django.db import models
from django.http import HttpRequest, HttpResponse

SYSTEM = "system"
ANONYMOUS = "anonymous"
#: Rows written before the columns existed.
UNRECORDED = "unrecorded"
#: Every value an `actor` column holds.
ACTOR_PATTERN = re.compile(r"^(system|anonymous|unrecorded|key:[0-9a-f-]{36}|user:.{1,150})$")

_actor: ContextVar[str | None] = ContextVar("ledger_actor", default=None)


def actor_current() -> str:
    """The actor of the work in progress: the request's, else `system`."""
    return _actor.get() or SYSTEM


def actor_set(actor: str) -> None:
    """Make `actor` the current request's actor (ActorMiddleware restores the previous one)."""
    _actor.set(actor)


def api_key_actor(key_id: object) -> str:
    return f"key:{key_id}"


def user_actor(username: str) -> str:
    return f"user:{username}"


class ActorMiddleware:
    """Each HTTP request is `anonymous`, or `user:<name>` with an admin session, until the
    API key authentication makes it `key:<id>`; outside requests it is `system`."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        user = getattr(request, "user", None)
        token = _actor.set(user_actor(user.get_username()) if user and user.is_authenticated else ANONYMOUS)
        try:
            return self.get_response(request)
        finally:
            _actor.reset(token)


def actor_field() -> models.CharField:
    """The `actor` column of a table whose rows are writes: filled by PostgreSQL (write_actor())."""
    return models.CharField(
        max_length=160,
        db_default=models.Func(function="write_actor", output_field=models.CharField()),
        editable=False,
        help_text="Who wrote it: key:<id>, user:<name>, anonymous or system (creditledger/actor.py).",
    )
