"""Request body parsers."""

import codecs
import io
from collections import Counter
from collections.abc import Mapping
from typing import IO, Any

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from rest_framework import parsers
from rest_framework.exceptions import ParseError
from rest_framework.settings import api_settings
from rest_framework.utils import json


class DuplicateKey(ValueError):
    pass


class JSONParser(parsers.JSONParser):
    """DRF's JSON parser, made strict about two things it lets through:

    - a key given twice in one object, at any depth: Python's json module keeps the last
      value, so `{"currency": "USD", "currency": "EUR"}` would open an EUR account;
    - a document nested too deeply for the parser, which would be an unhandled RecursionError.

    Both are malformed requests (400).
    """

    def parse(
        self, stream: IO[Any], media_type: str | None = None, parser_context: Mapping[str, Any] | None = None
    ) -> Any:
        return _strict_json_load(stream, parser_context, strict=self.strict)


class LargeJSONParser(parsers.BaseParser):
    """JSONParser's rules for the bodies of batch endpoints, up to
    settings.MAX_BATCH_REQUEST_BODY_BYTES instead of DATA_UPLOAD_MAX_MEMORY_SIZE.

    DRF reads the body of a JSONParser subclass through HttpRequest.body, which holds every
    endpoint to DATA_UPLOAD_MAX_MEMORY_SIZE; this parser reads the stream itself, to its own limit.
    """

    media_type = "application/json"

    def parse(
        self, stream: IO[Any], media_type: str | None = None, parser_context: Mapping[str, Any] | None = None
    ) -> Any:
        limit = settings.MAX_BATCH_REQUEST_BODY_BYTES
        raw = stream.read(limit + 1)
        if len(raw) > limit:
            raise RequestDataTooBig(
                f"The request body is larger than the {limit} bytes this endpoint accepts "
                "(MAX_BATCH_REQUEST_BODY_BYTES)."
            )
        return _strict_json_load(io.BytesIO(raw), parser_context, strict=api_settings.STRICT_JSON)


def _strict_json_load(stream: IO[Any], parser_context: Mapping[str, Any] | None, *, strict: bool) -> Any:
    # DRF's own charset check (the stubs, 3.18.1, lack it).
    encoding = parsers.get_encoding(parser_context or {})  # type: ignore[attr-defined]  # stub gap
    try:
        text = codecs.getreader(encoding)(stream).read()
        return json.loads(
            text,
            parse_constant=json.strict_constant if strict else None,
            object_pairs_hook=_object_without_duplicate_keys,
        )
    except RecursionError:
        raise ParseError("JSON parse error - the document is nested too deeply.") from None
    except ValueError as exc:  # bad JSON, a bad encoding, or a DuplicateKey
        raise ParseError(f"JSON parse error - {exc}") from None


def _object_without_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    document = dict(pairs)
    if len(document) != len(pairs):
        duplicate = next(key for key, count in Counter(key for key, _ in pairs).items() if count > 1)
        raise DuplicateKey(f"the key {duplicate!r} is given more than once in one object.")
    return document
