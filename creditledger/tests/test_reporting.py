"""Django's debug page (DJANGO_DEBUG=true) and error reports show no secret."""

from __future__ import annotations

import secrets
import sys

import pytest
from django.test import RequestFactory
from django.views.debug import technical_500_response

# Random, so that the page's source excerpts (of this file) cannot show them either.
DATABASE_PASSWORD, BROKER_PASSWORD, OTHER_PASSWORD, API_KEY = (secrets.token_hex(8) for _ in range(4))


@pytest.fixture
def debug_page(settings):
    settings.DEBUG = True
    settings.CELERY_BROKER_URL = f"redis://:{BROKER_PASSWORD}@redis:6379/0"
    settings.SOME_SERVICE = {"ENDPOINT": f"https://ledger:{OTHER_PASSWORD}@kafka.example.com"}
    request = RequestFactory().get(
        "/transfers",
        DATABASE_URL=f"postgres://ledger:{DATABASE_PASSWORD}@postgres:5432/creditledger",
        READ_DATABASE_URL=f"postgres://ledger:{DATABASE_PASSWORD}@replica/creditledger",
        HTTP_AUTHORIZATION=f"Bearer {API_KEY}",
    )
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        response = technical_500_response(request, *sys.exc_info())
    return response.content.decode()


def test_the_debug_page_masks_database_and_broker_urls_and_credentials_in_any_url(debug_page):
    assert "boom" in debug_page  # it is the debug page
    for secret in (DATABASE_PASSWORD, BROKER_PASSWORD, OTHER_PASSWORD, API_KEY):
        assert secret not in debug_page
    assert "DATABASE_URL" in debug_page  # named, with its value masked
    assert "CELERY_BROKER_URL" in debug_page
