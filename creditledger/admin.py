"""Admin building blocks shared by every app: a read-only auditing view of the ledger.

Ledger data changes only through the services, so the admin may show it but never add,
change or delete a row, whoever is logged in (superusers included).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

from django.conf import settings
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.contrib.admin.utils import lookup_spawns_duplicates, quote
from django.contrib.messages.middleware import MessageMiddleware
from django.core.exceptions import FieldDoesNotExist, ValidationError
from django.db.models import Field, ForeignObjectRel, Model, Q, QuerySet
from django.db.models.constants import LOOKUP_SEP
from django.db.models.fields.related import RelatedField
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html

if TYPE_CHECKING:
    # What the mixins are mixed into, so the type checker knows `self.model`, `super()`...
    _BaseModelAdmin = admin.options.BaseModelAdmin[Any]
    _ModelAdmin = admin.ModelAdmin[Any]
else:
    _BaseModelAdmin = _ModelAdmin = object


class ReadOnlyAdminMixin(_BaseModelAdmin):
    """For a ModelAdmin or an inline: users with the view permission see every field and
    nobody may add, change or delete anything."""

    def has_add_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False

    def get_readonly_fields(self, request: HttpRequest, obj: Model | None = None) -> list[str]:
        # Every concrete field, including the non-editable ids Django would otherwise hide.
        model_fields = [field.name for field in self.model._meta.concrete_fields]
        extra = [name for name in super().get_readonly_fields(request, obj) if name not in model_fields]
        return model_fields + extra


class ValidSelectionMixin(_ModelAdmin):
    """An admin action posted with a selected id that is not one (a hand-made request) gets a
    warning and changes nothing, where Django's own filter would fail with a 500."""

    def response_action(self, request: HttpRequest, queryset: QuerySet, *args: Any, **kwargs: Any) -> Any:
        pk = cast(Field, self.model._meta.pk)  # every model has one
        try:
            for value in request.POST.getlist(helpers.ACTION_CHECKBOX_NAME):
                pk.to_python(value)
        except ValidationError:
            self.message_user(request, "Not an id of this list: no items have been changed.", messages.WARNING)
            return None
        return super().response_action(request, queryset, *args, **kwargs)


class IdentifierSearchMixin(_ModelAdmin):
    """Admin search that finds rows by their identifiers through the indexes.

    Each name in `search_fields` is a field path ("id", "from_account") that must equal the
    whole search term; a path ending in a lookup ("name__icontains") is applied as written.
    A term that is not a valid value for a field (a non-UUID for a UUID column) skips that
    field. Django's own search would instead compare `CAST(id AS varchar)` or use
    `ILIKE '%term%'`, which no index serves on tables of millions of rows.
    """

    def get_search_results(self, request: HttpRequest, queryset: QuerySet, search_term: str) -> tuple[QuerySet, bool]:
        term = search_term.strip()
        if not term:
            return queryset, False
        lookups = [
            lookup
            for path in self.get_search_fields(request)
            if (lookup := _search_lookup(queryset.model, path, term)) is not None
        ]
        if not lookups:
            return queryset.none(), False
        may_have_duplicates = any(lookup_spawns_duplicates(queryset.model._meta, path) for path, _ in lookups)
        return queryset.filter(Q.create([*lookups], connector=Q.OR)), may_have_duplicates


class LedgerTableAdmin(ReadOnlyAdminMixin, IdentifierSearchMixin, admin.ModelAdmin):
    """Read-only admin for a table of millions of rows: list pages neither count the whole
    table nor offer filter counts, and search goes by exact identifiers. Subclasses should
    also sort only on indexed columns (`ordering`, `sortable_by`)."""

    show_full_result_count = False
    show_facets = admin.ShowFacets.NEVER


def _search_lookup(model: type[Model], path: str, term: str) -> tuple[str, Any] | None:
    """(lookup, value) matching `term` on the field at `path`, or None if `term` cannot be a value of it."""
    field: Field[Any, Any] | ForeignObjectRel | None = None
    for part in path.split(LOOKUP_SEP):
        if field is None:
            opts = model._meta
        elif isinstance(field, (RelatedField, ForeignObjectRel)):
            opts = field.related_model._meta
        else:
            return path, term  # the path ends in an explicit lookup
        try:
            field = opts.get_field(part)
        except FieldDoesNotExist:
            return path, term  # an explicit lookup on a relation
    if field is None:  # never: str.split() gives at least one part
        return path, term
    if isinstance(field, (RelatedField, ForeignObjectRel)):
        field = field.target_field
    try:
        return path, field.to_python(term)
    except ValidationError:
        return None


def admin_link(model: type[Model], pk: Any, text: Any = None) -> str:
    """A link to the admin page of one row, built from its id alone (no query)."""
    if pk is None:
        return "-"
    opts = model._meta
    url = reverse(f"admin:{opts.app_label}_{opts.model_name}_change", args=[quote(pk)])
    return format_html('<a href="{}">{}</a>', url, pk if text is None else text)


def amount_with_currency(amount: int | None, currency: str) -> str:
    """An amount in minor units, as the integer it is, followed by its currency code."""
    return "-" if amount is None else f"{amount:d} {currency}"


class AdminMessageMiddleware(MessageMiddleware):
    """Django's messages, for the admin only: nothing else shows them, and building their
    storage (a cookie signer and a session store) for every API request cost about 2 % of the
    web's CPU per POST /transfers (benchmarks/README.md, "A lean hot path"). Django's own
    process_response skips a request that has no storage."""

    def process_request(self, request: HttpRequest) -> None:
        if request.path_info.startswith("/" + settings.ADMIN_URL):
            super().process_request(request)
