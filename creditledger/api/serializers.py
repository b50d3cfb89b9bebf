"""Base serializers for API input."""

from functools import cache
from typing import Any, TypeVar
from uuid import UUID

from rest_framework import serializers
from rest_framework.request import Request

from creditledger.api.fields import CursorField
from creditledger.pagination import DEFAULT_LIMIT, MAX_LIMIT


class StrictInputSerializer(serializers.Serializer):
    """Rejects fields it does not know: a misspelt `overdraftLimit` must not silently
    create an account with unlimited overdraft."""

    def to_internal_value(self, data: Any) -> Any:
        if isinstance(data, dict):
            unknown = sorted(set(data) - set(self.fields))
            if unknown:
                raise serializers.ValidationError({name: ["Unknown field."] for name in unknown})
        return super().to_internal_value(data)


class NoQueryParameters(StrictInputSerializer):
    """The query string of an endpoint that takes no parameters: any one is unknown."""


InputT = TypeVar("InputT", bound=serializers.Serializer)


def input_validate(serializer_class: type[serializers.Serializer], data: Any) -> Any:
    """`data` validated by `serializer_class`: its `validated_data`, or the ValidationError
    that `is_valid(raise_exception=True)` raises. One instance of each class validates every
    request: a serializer deep-copies its class's fields into a new tree each time it is
    built, which cost POST /transfers more than the validation itself. Validating keeps no
    state on the instance, so threads share it. A body that is not a JSON object takes DRF's
    own path, which words some of its errors differently ("No data provided" for null)."""
    if not isinstance(data, dict):
        serializer = serializer_class(data=data)
        serializer.is_valid(raise_exception=True)
        return serializer.validated_data
    return _input_validator(serializer_class).run_validation(data)


@cache
def _input_validator(serializer_class: type[InputT]) -> InputT:
    validator = serializer_class()
    validator.fields  # noqa: B018 - built once here, not by threads racing on the cached property
    return validator


def query_params_validate(request: Request, serializer_class: type[StrictInputSerializer]) -> dict[str, Any]:
    """The validated query string. A parameter given twice is refused, as an unknown one is:
    a QueryDict would silently keep the last value."""
    repeated = sorted(name for name, values in request.query_params.lists() if len(values) > 1)
    if repeated:
        raise serializers.ValidationError({name: ["Given more than once."] for name in repeated})
    return input_validate(serializer_class, request.query_params.dict())


class PageQuerySerializer(StrictInputSerializer):
    """Query parameters of a keyset-paginated list whose key is a UUID. A subclass names each
    field's `source` after the list selector's keyword, so that the view passes them as they are."""

    cursor = CursorField(
        position_type=UUID, required=False, source="after", help_text="`nextCursor` from the previous page."
    )
    limit = serializers.IntegerField(required=False, min_value=1, max_value=MAX_LIMIT, default=DEFAULT_LIMIT)


def keyword_fields(**fields: serializers.Field):
    """Declare fields named after Python keywords (the seed API's `from`), which cannot be
    written as class attributes. They come first, in the given order."""

    def decorate(serializer_class: type[serializers.Serializer]) -> type[serializers.Serializer]:
        serializer_class._declared_fields = {**fields, **serializer_class._declared_fields}
        return serializer_class

    return decorate
