from uuid import UUID

from django.core.management.base import BaseCommand, CommandError

from apps.apikeys.services import api_key_revoke
from creditledger import errors


class Command(BaseCommand):
    help = "Revoke an API key: its next request, in any web worker, gets 401."

    def add_arguments(self, parser) -> None:
        parser.add_argument("key_id", help="The key's id, as api_key_list shows it (or the hex of the printed key).")

    def handle(self, *args, **options) -> None:
        try:
            key = api_key_revoke(key_id=UUID(options["key_id"]))
        except ValueError:
            raise CommandError(f"{options['key_id']!r} is not a key id.") from None
        except errors.LedgerError as exc:
            raise CommandError(exc.detail) from None
        self.stdout.write(f"Revoked API key {key.id} '{key.name}' (owner '{key.owner}').")
