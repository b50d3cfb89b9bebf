from django.db import connection
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from creditledger import errors
from creditledger.api.schema import problem_responses
from creditledger.api.scopes import PUBLIC
from creditledger.api.serializers import NoQueryParameters, query_params_validate

_StatusSerializer = inline_serializer("HealthStatus", {"status": serializers.CharField()})


class HealthzApi(APIView):
    required_scopes = {"GET": PUBLIC}

    @extend_schema(
        tags=["health"],
        summary="Liveness: the process is up",
        responses={200: _StatusSerializer, **problem_responses(400)},
    )
    def get(self, request):
        query_params_validate(request, NoQueryParameters)
        return Response({"status": "ok"})


class ReadyzApi(APIView):
    required_scopes = {"GET": PUBLIC}

    @extend_schema(
        tags=["health"],
        summary="Readiness: the database answers",
        responses={200: _StatusSerializer, **problem_responses(400, 503)},
    )
    def get(self, request):
        query_params_validate(request, NoQueryParameters)
        try:
            with connection.cursor() as cursor:
                cursor.execute("SELECT 1")
        except Exception as exc:  # any failure to reach the database means not ready
            raise errors.ServiceUnavailable(f"Database unreachable: {exc.__class__.__name__}") from exc
        return Response({"status": "ready"})
