"""LEDGER_AUTH: off under `make run` (and it says so), required by the production settings."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from creditledger.devstack import BASE_DIR, auth_banner


def test_make_run_says_in_one_line_that_auth_is_off_and_how_to_turn_it_on(tmp_path: Path):
    banner = auth_banner({}, dotenv=tmp_path / ".env")
    assert "auth is OFF" in banner
    assert "LEDGER_AUTH=required make run" in banner
    assert "\n" not in banner


def test_make_run_says_when_keys_are_required_from_the_environment_or_dotenv(tmp_path: Path):
    dotenv = tmp_path / ".env"
    assert "api_key_create" in auth_banner({"LEDGER_AUTH": "required"}, dotenv=dotenv)
    dotenv.write_text("DJANGO_DEBUG=false\nLEDGER_AUTH=required\n")
    assert "api_key_create" in auth_banner({}, dotenv=dotenv)
    assert "auth is OFF" in auth_banner({"LEDGER_AUTH": "off"}, dotenv=dotenv)


def settings_value(module: str, name: str, **env: str) -> subprocess.CompletedProcess[str]:
    """`name` as `module` sets it, in a fresh interpreter with only `env` (and no ./.env)."""
    environment = {key: value for key, value in os.environ.items() if not key.startswith(("DJANGO_", "LEDGER_"))}
    environment.update({"DJANGO_SETTINGS_MODULE": module, **env})
    code = f"import django; django.setup(); from django.conf import settings; print(settings.{name})"
    return subprocess.run(
        [sys.executable, "-c", code], cwd=BASE_DIR, env=environment, capture_output=True, text=True, check=False
    )


PRODUCTION_ENV = {"DJANGO_SECRET_KEY": "x" * 50, "DJANGO_ALLOWED_HOSTS": "ledger.example.com"}


def test_production_requires_keys_whatever_the_environment_says():
    done = settings_value("config.settings.production", "LEDGER_AUTH", LEDGER_AUTH="off", **PRODUCTION_ENV)
    assert done.stdout.strip() == "required", done.stderr


@pytest.mark.parametrize("module", ["config.settings.local", "config.settings.test"])
def test_other_settings_leave_auth_off_unless_asked(module):
    assert settings_value(module, "LEDGER_AUTH").stdout.strip() == "off"
    assert settings_value(module, "LEDGER_AUTH", LEDGER_AUTH="required").stdout.strip() == "required"


def test_an_unknown_auth_mode_refuses_to_start():
    done = settings_value("config.settings.local", "LEDGER_AUTH", LEDGER_AUTH="on")
    assert done.returncode != 0
    assert "LEDGER_AUTH must be off or required" in done.stderr
