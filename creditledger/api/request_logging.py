"""Logging for answers that are expected, not bugs."""

import logging


class ExpectedResponseWithoutTraceback(logging.Filter):
    """Keeps `django.request`'s line for a 4xx or a 503, without the traceback Django attaches
    when the answer came from an exception: a staff user refused by the read-only admin
    (PermissionDenied, 403) is a normal event, and a traceback per refusal buries real errors.
    A 500 keeps its traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        status = getattr(record, "status_code", None)
        if status is not None and (400 <= status < 500 or status == 503):
            record.exc_info = None
            record.exc_text = None
        return True
