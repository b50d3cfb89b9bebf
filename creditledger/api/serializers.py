"""Base serializers for API input."""

from typing import Any
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


def query_params_validate(request: Request, serializer_class: type[StrictInputSerializer]) -> dict[str, Any]:
    """The validated query string. A parameter given twice is refused, as an unknown one is:
    a QueryDict would silently keep the last value."""
    repeated = sorted(name for name, values in request.query_params.lists() if len(values) > 1)
    if repeated:
        raise serializers.ValidationError({name: ["Given more than once."] for name in repeated})
    serializer = serializer_class(data=request.query_params.dict())
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data


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
