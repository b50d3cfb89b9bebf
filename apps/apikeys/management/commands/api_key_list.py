from django.core.management.base import BaseCommand

from apps.apikeys.selectors import api_key_list


class Command(BaseCommand):
    help = "List API keys, newest first (never their secrets)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--active", action="store_true", help="Leave out revoked keys.")

    def handle(self, *args, **options) -> None:
        for key in api_key_list(include_revoked=not options["active"]):
            last_used = key.last_used_at.isoformat(timespec="seconds") if key.last_used_at else "never"
            revoked = f"revoked {key.revoked_at.isoformat(timespec='seconds')}" if key.revoked_at else "active"
            self.stdout.write(
                f"{key.id}  {key.name!r} owner={key.owner!r} scopes={','.join(key.scopes)} "
                f"created={key.created_at.isoformat(timespec='seconds')} last_used={last_used} {revoked}"
            )
