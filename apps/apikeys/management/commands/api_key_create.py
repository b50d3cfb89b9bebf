import os
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from apps.apikeys.services import api_key_create
from creditledger import errors
from creditledger.api.scopes import SCOPES


class Command(BaseCommand):
    help = "Create an API key and print it, once: only the hash of its secret is kept."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--name", required=True, help="What the key is for.")
        parser.add_argument(
            "--scopes", required=True, nargs="+", metavar="SCOPE", help=f"One or more of: {', '.join(SCOPES)}."
        )
        parser.add_argument(
            "--owner", help="Whose key it is (default: the name); its idempotency keys are the owner's."
        )
        parser.add_argument(
            "--write-to",
            metavar="FILE",
            help="Write the key to FILE (created or replaced, mode 0640) instead of printing it: for a program "
            "that reads it, such as Prometheus' credentials_file.",
        )

    def handle(self, *args, **options) -> None:
        scopes = [scope for value in options["scopes"] for scope in value.replace(",", " ").split()]
        try:
            created = api_key_create(name=options["name"], scopes=scopes, owner=options["owner"])
        except errors.LedgerError as exc:
            raise CommandError(exc.detail) from None
        key = created.key
        self.stdout.write(f"Created API key {key.id} '{key.name}' for owner '{key.owner}': {' '.join(key.scopes)}")
        if options["write_to"]:
            path = Path(options["write_to"])
            path.unlink(missing_ok=True)  # a new file, so that the mode below is its mode
            descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640)
            os.fchmod(descriptor, 0o640)  # whatever the umask
            with os.fdopen(descriptor, "w") as file:
                file.write(created.printed)
            self.stdout.write(f"Written to {path}.")
            return
        self.stdout.write("Store it now; it is not shown again:")
        self.stdout.write(created.printed)
