"""The real URLs plus `/bench/noop`: a bare Django view answering 204 (the baseline)."""

from django.http import HttpResponse
from django.urls import path
from django.views.decorators.csrf import csrf_exempt

from reengage.urls import urlpatterns as real


@csrf_exempt
def noop(request):
    request.body  # noqa: B018 - read the body like the ingest view does
    return HttpResponse(status=204)


urlpatterns = [path("bench/noop", noop), *real]
