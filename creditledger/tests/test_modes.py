"""LEDGER_AUTH: off under `make run` (and it says so), required by the production settings,
which also refuse to start without a real secret key and host list and pass `check --deploy`."""

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


PRODUCTION_ENV = {
    "DJANGO_SECRET_KEY": "production-" + "0123456789abcdef" * 4,
    "DJANGO_ALLOWED_HOSTS": "ledger.example.com",
}


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


@pytest.mark.parametrize("value", ["100", "100/x", "100/10s", "0/s", "-5/s", "²/s"])
def test_a_rate_limit_drf_could_not_read_refuses_to_start(value):
    """DRF parses the budget at every request: a bad one would answer 500 to all of them."""
    done = settings_value("config.settings.local", "LEDGER", LEDGER_RATE_LIMIT_READS=value)
    assert done.returncode != 0
    assert "LEDGER_RATE_LIMIT_READS must be N/s" in done.stderr


def test_a_rate_limit_per_second_minute_hour_or_day_is_taken():
    done = settings_value("config.settings.local", "LEDGER", LEDGER_RATE_LIMIT_WRITES="20/min")
    assert done.returncode == 0, done.stderr
    assert "20/min" in done.stdout


# --- the production settings ------------------------------------------------------------------


def manage(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    environment = {key: value for key, value in os.environ.items() if not key.startswith(("DJANGO_", "LEDGER_"))}
    environment.update({"DJANGO_SETTINGS_MODULE": "config.settings.production", **env})
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=BASE_DIR, env=environment, capture_output=True, text=True, check=False
    )


def test_the_deploy_checks_pass_with_the_production_settings():
    done = manage("check", "--deploy", "--fail-level", "WARNING", **PRODUCTION_ENV)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "no issues" in done.stdout


@pytest.mark.parametrize(
    ("env", "complaint"),
    [
        ({"DJANGO_ALLOWED_HOSTS": "ledger.example.com"}, "DJANGO_SECRET_KEY"),
        (
            {"DJANGO_SECRET_KEY": "insecure-local-only-key", "DJANGO_ALLOWED_HOSTS": "x.example.com"},
            "DJANGO_SECRET_KEY",
        ),
        ({"DJANGO_SECRET_KEY": "short", "DJANGO_ALLOWED_HOSTS": "x.example.com"}, "DJANGO_SECRET_KEY"),
        ({"DJANGO_SECRET_KEY": "0123456789abcdef" * 4}, "DJANGO_ALLOWED_HOSTS"),
        ({"DJANGO_SECRET_KEY": "abcde" * 10, "DJANGO_ALLOWED_HOSTS": "x.example.com"}, "DJANGO_SECRET_KEY"),
        (
            {"DJANGO_SECRET_KEY": "django-insecure-" + "0123456789abcdef" * 3, "DJANGO_ALLOWED_HOSTS": "x.example.com"},
            "DJANGO_SECRET_KEY",
        ),
        ({"DJANGO_SECRET_KEY": "0123456789abcdef" * 4, "DJANGO_ALLOWED_HOSTS": "*"}, "DJANGO_ALLOWED_HOSTS"),
        ({"DJANGO_SECRET_KEY": "0123456789abcdef" * 4, "DJANGO_ALLOWED_HOSTS": " , "}, "DJANGO_ALLOWED_HOSTS"),
        ({"DJANGO_SECRET_KEY": "0123456789abcdef" * 4, "DJANGO_ALLOWED_HOSTS": "."}, "DJANGO_ALLOWED_HOSTS"),
    ],
)
def test_production_refuses_to_start_without_a_secret_key_and_hosts(env, complaint):
    done = manage("check", **env)
    assert done.returncode != 0
    assert "ImproperlyConfigured" in done.stderr
    assert complaint in done.stderr.splitlines()[-1]
