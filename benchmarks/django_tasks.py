"""Set-up steps that need the application's own code, run with the stack's environment:

    python -m benchmarks.django_tasks accounts COUNT   # prints the new account ids (JSON)

Accounts are opened in bulk, but with exactly the rows `account_create` writes: the account
and its AccountCreated outbox event (built by the same `account_created_message`), in the
same transaction, whose commit kicks the relay. Only the per-account transaction is batched.
Every account has an unlimited overdraft (the API's default), so no transfer is refused.
"""

from __future__ import annotations

import json
import sys


def accounts(count: int, currency: str = "USD", batch: int = 2000) -> list[str]:
    from django.db import transaction

    from apps.accounts.events import account_created_message
    from apps.accounts.models import Account
    from apps.outbox.services import outbox_messages_add

    ids: list[str] = []
    for start in range(0, count, batch):
        size = min(batch, count - start)
        with transaction.atomic(durable=True):
            created = Account.objects.bulk_create(
                [
                    Account(currency_id=currency, name=f"bench-{start + n}", overdraft_limit=None, metadata={})
                    for n in range(size)
                ]
            )
            outbox_messages_add(*(account_created_message(account) for account in created))
        ids += [str(account.id) for account in created]
    return ids


def main(argv: list[str]) -> int:
    import django

    django.setup()
    command = argv[1]
    if command == "accounts":
        print(json.dumps(accounts(int(argv[2]))))
        return 0
    raise SystemExit(f"unknown command {command}")


if __name__ == "__main__":
    sys.exit(main(sys.argv))
