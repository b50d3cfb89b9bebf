"""api_key_create, api_key_list and api_key_revoke, as an operator runs them."""

from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from apps.apikeys.models import ApiKey
from apps.apikeys.services import KEY_PREFIX, api_key_authenticate

pytestmark = pytest.mark.django_db


def run(*args: str) -> str:
    out = StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


def test_create_prints_the_key_once_and_list_never_shows_it():
    created = run("api_key_create", "--name", "billing", "--scopes", "transfers:write", "accounts:read,transfers:read")
    printed = created.splitlines()[-1]
    assert printed.startswith(KEY_PREFIX)
    key = api_key_authenticate(presented=printed)
    assert key is not None
    assert (key.name, key.owner, key.scopes) == (
        "billing",
        "billing",
        ["accounts:read", "transfers:read", "transfers:write"],
    )

    listed = run("api_key_list")
    assert str(key.id) in listed
    assert "owner='billing'" in listed
    assert printed.split("_", 3)[3] not in listed


def test_create_takes_an_owner_and_refuses_an_unknown_scope():
    run("api_key_create", "--name", "ci-2", "--owner", "ci", "--scopes", "admin")
    assert ApiKey.objects.get(name="ci-2").owner == "ci"
    with pytest.raises(CommandError, match="Unknown scope"):
        run("api_key_create", "--name", "bad", "--scopes", "transfers:delete")
    assert not ApiKey.objects.filter(name="bad").exists()


def test_revoke_stops_the_key_and_list_says_so():
    printed = run("api_key_create", "--name", "old", "--scopes", "admin").splitlines()[-1]
    key_id = str(ApiKey.objects.get(name="old").id)

    assert "Revoked" in run("api_key_revoke", key_id)
    assert api_key_authenticate(presented=printed) is None
    assert "revoked" in run("api_key_list")
    assert run("api_key_list", "--active") == ""
    with pytest.raises(CommandError, match="not a key id"):
        run("api_key_revoke", "nonsense")


def test_create_writes_the_key_to_a_file_instead_of_printing_it(tmp_path):
    target = tmp_path / "prometheus"
    target.write_text("an older key")
    out = run("api_key_create", "--name", "prometheus", "--scopes", "admin", "--write-to", str(target))

    printed = target.read_text()
    assert api_key_authenticate(presented=printed) is not None
    assert printed not in out
    assert target.stat().st_mode & 0o777 == 0o640
