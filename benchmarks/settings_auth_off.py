"""The production settings with API keys off: the baseline scenario c measures authentication
and rate limits against (issue 12: together under 5 % of a transfer's CPU). A benchmark's
instrument, never a deployment's settings."""

from config.settings.production import *  # noqa: F403

LEDGER_AUTH = "off"
