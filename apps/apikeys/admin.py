"""API keys in the admin: staff with `add_apikey` create one (its key is shown once), staff
with `revoke_apikey` revoke them; nobody edits or deletes one."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.cache import add_never_cache_headers

from apps.apikeys.models import ApiKey
from apps.apikeys.services import NAME_MAX_LENGTH, api_key_create, api_key_revoke
from creditledger.admin import ValidSelectionMixin
from creditledger.api.scopes import SCOPES


class ApiKeyCreateForm(forms.ModelForm):
    name = forms.CharField(max_length=NAME_MAX_LENGTH, help_text="What the key is for.")
    owner = forms.CharField(
        max_length=NAME_MAX_LENGTH,
        required=False,
        help_text="Whose key it is; its idempotency keys are the owner's. Default: the name.",
    )
    scopes = forms.MultipleChoiceField(
        choices=[(scope.name, f"{scope.name}: {scope.description}") for scope in SCOPES.values()],
        widget=forms.CheckboxSelectMultiple,
    )

    class Meta:
        model = ApiKey
        fields = ("name", "owner", "scopes")


@admin.register(ApiKey)
class ApiKeyAdmin(ValidSelectionMixin, admin.ModelAdmin):
    list_display = ("id", "name", "owner", "scope_list", "created_at", "last_used_at", "revoked_at")
    list_filter = ("revoked_at",)
    search_fields = ("name__icontains", "owner__iexact")
    ordering = ("-created_at",)
    fields = ("id", "name", "owner", "scopes", "created_at", "last_used_at", "revoked_at")
    actions = ("revoke",)

    @admin.display(description="scopes")
    def scope_list(self, key: ApiKey) -> str:
        return ", ".join(key.scopes)

    def get_form(self, request: HttpRequest, obj: Any = None, change: bool = False, **kwargs: Any) -> Any:
        if obj is None:
            kwargs["form"] = ApiKeyCreateForm
        return super().get_form(request, obj, change=change, **kwargs)

    def get_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        return ("name", "owner", "scopes") if obj is None else self.fields

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        return () if obj is None else self.fields

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_revoke_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("apikeys.revoke_apikey")

    def save_model(self, request: HttpRequest, obj: ApiKey, form: Any, change: bool) -> None:
        """Create through the service, which keeps only the secret's hash; the key is shown here, once."""
        data = form.cleaned_data
        created = api_key_create(name=data["name"], scopes=data["scopes"], owner=data["owner"] or None)
        obj.__dict__.update({field.attname: getattr(created.key, field.attname) for field in ApiKey._meta.fields})
        obj._state.adding = False
        request._api_key_printed = created.printed  # type: ignore[attr-defined]  # for response_add

    def response_add(self, request: HttpRequest, obj: ApiKey, post_url_continue: str | None = None) -> HttpResponse:
        """The new key, on this page alone: not in a message, which would carry it in a cookie
        or the session, and never cached."""
        response = TemplateResponse(
            request,
            "admin/apikeys/apikey/created.html",
            {
                **self.admin_site.each_context(request),
                "key": obj,
                "printed": request._api_key_printed,  # type: ignore[attr-defined]
                "changelist_url": reverse("admin:apikeys_apikey_changelist", current_app=self.admin_site.name),
                "opts": self.opts,
            },
        )
        add_never_cache_headers(response)
        return response

    def construct_change_message(self, request: HttpRequest, form: Any, formsets: Any, add: bool = False) -> Any:
        """The admin's history of a created key names its scopes and owner (never its secret)."""
        if not add:
            return super().construct_change_message(request, form, formsets, add)
        data = form.cleaned_data
        return f"Created the API key with scopes {', '.join(data['scopes'])}, owner {data['owner'] or data['name']}."

    @admin.action(description="Revoke the selected API keys", permissions=["revoke"])
    def revoke(self, request: HttpRequest, queryset: QuerySet[ApiKey]) -> None:
        keys = list(queryset)
        for key in keys:
            revoked = api_key_revoke(key_id=key.id)
            if key.revoked_at is None:  # revoking a revoked key changes nothing, and is not logged
                self.log_change(request, revoked, "Revoked the API key.")
        self.message_user(request, f"Revoked {len(keys)} API key(s); their next request gets 401.", messages.SUCCESS)
