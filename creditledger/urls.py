from django.conf import settings
from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from creditledger.api.health import HealthzApi, ReadyzApi
from creditledger.metrics import MetricsApi

urlpatterns = [
    path("healthz", HealthzApi.as_view(), name="healthz"),
    path("readyz", ReadyzApi.as_view(), name="readyz"),
    path("metrics", MetricsApi.as_view(), name="metrics"),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/", SpectacularSwaggerView.as_view(url_name="schema"), name="swagger-ui"),
    path(settings.ADMIN_URL, admin.site.urls),
    path("", include("apps.api.urls")),
]

handler400 = "creditledger.api.exception_handler.bad_request_view"
handler404 = "creditledger.api.exception_handler.not_found_view"
handler500 = "creditledger.api.exception_handler.server_error_view"
