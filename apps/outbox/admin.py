from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest

from apps.outbox.models import OutboxEvent
from apps.outbox.topics import ALL_TOPICS
from creditledger.admin import LedgerTableAdmin


class PublishedFilter(admin.SimpleListFilter):
    title = "published"
    parameter_name = "published"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        return [("yes", "Published"), ("no", "Waiting for the relay")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[OutboxEvent]) -> QuerySet[OutboxEvent]:
        if self.value() == "yes":
            return queryset.filter(published_at__isnull=False)
        if self.value() == "no":
            return queryset.filter(published_at__isnull=True)
        return queryset


class TopicFilter(admin.SimpleListFilter):
    """The topics we publish to, from the code: listing the table's distinct values would scan it."""

    title = "topic"
    parameter_name = "topic"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        return [(topic, topic) for topic in ALL_TOPICS]

    def queryset(self, request: HttpRequest, queryset: QuerySet[OutboxEvent]) -> QuerySet[OutboxEvent]:
        return queryset.filter(topic=self.value()) if self.value() else queryset


@admin.register(OutboxEvent)
class OutboxEventAdmin(LedgerTableAdmin):
    list_display = ("id", "event_type", "topic", "key", "event_id", "created_at", "published_at")
    list_filter = (PublishedFilter, TopicFilter, "created_at")
    search_fields = ("event_id", "key")
    search_help_text = "Event id, or message key: the id of the account or transfer (exact)."
    ordering = ("-id",)
    sortable_by = ("id",)
