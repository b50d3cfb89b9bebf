"""An expected refusal logs one line on `django.request` (the LOGGING setting puts
ExpectedResponseWithoutTraceback on that logger); a server error keeps its traceback."""

from __future__ import annotations

import logging
import sys

import pytest
from django.contrib.auth.models import User
from django.urls import reverse

from creditledger.api.request_logging import ExpectedResponseWithoutTraceback


@pytest.fixture
def request_logger() -> logging.Logger:
    """`django.request` as the LOGGING setting configures it."""
    logger = logging.getLogger("django.request")
    assert any(isinstance(f, ExpectedResponseWithoutTraceback) for f in logger.filters)
    return logger


@pytest.mark.django_db
def test_staff_the_read_only_admin_refuses_logs_one_line_without_a_traceback(client, caplog, request_logger):
    client.force_login(User.objects.create_user("intern", is_staff=True))
    path = reverse("admin:accounts_account_changelist")

    with caplog.at_level(logging.INFO, logger="django.request"):
        response = client.get(path)

    assert response.status_code == 403
    (line,) = [record for record in caplog.records if record.name == "django.request"]
    assert (line.levelno, line.getMessage(), line.exc_info) == (
        logging.WARNING,
        f"Forbidden (Permission denied): {path}",
        None,
    )


@pytest.mark.parametrize(("status", "keeps_traceback"), [(403, False), (404, False), (503, False), (500, True)])
def test_only_a_server_error_keeps_its_traceback(request_logger, status, keeps_traceback):
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        record = request_logger.makeRecord(
            request_logger.name,
            logging.ERROR,
            __file__,
            0,
            "Some answer: /path",
            (),
            sys.exc_info(),
            extra={"status_code": status},
        )

    assert request_logger.filter(record)
    assert (record.exc_info is not None) is keeps_traceback
