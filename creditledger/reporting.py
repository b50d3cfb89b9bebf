"""What Django's debug page and error reports may show: no secret, whatever its setting's name."""

from __future__ import annotations

import re
from typing import Any

from django.views.debug import SafeExceptionReporterFilter

#: A URL with credentials in it: scheme://user:password@host or scheme://:password@host.
_CREDENTIALS_IN_URL = re.compile(r"\w+://[^/\s@]*@")


class SecretsHiddenExceptionReporterFilter(SafeExceptionReporterFilter):
    """Django's filter masks names with API, AUTH, TOKEN, KEY, SECRET, PASS, SIGNATURE or
    HTTP_COOKIE; this one also masks database and broker settings and variables (DATABASE_URL,
    CELERY_BROKER_URL, READ_DATABASE_URL and the like), DSNs, and any value that is a URL with
    credentials, whatever its name."""

    hidden_settings = re.compile(
        "API|AUTH|TOKEN|KEY|SECRET|PASS|SIGNATURE|HTTP_COOKIE|DATABASE|BROKER|DSN|CREDENTIAL|_URL$", flags=re.IGNORECASE
    )

    def cleanse_setting(self, key: Any, value: Any) -> Any:
        # str(): a lazy string (django-axes' AXES_USERNAME_FORM_FIELD) passes isinstance but not re.
        if isinstance(value, str) and _CREDENTIALS_IN_URL.search(str(value)):
            return self.cleansed_substitute
        return super().cleanse_setting(key, value)
