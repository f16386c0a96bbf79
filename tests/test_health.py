import pytest
from django.test import override_settings


@pytest.mark.django_db
def test_it_reports_ok_when_database_redis_and_a_worker_are_up(client, celery_worker_process):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {
        "status": "ok",
        "checks": {"database": "ok", "redis": "ok", "worker": "ok"},
        "dead_letters": 0,
    }


@pytest.mark.django_db
def test_it_answers_503_naming_the_worker_when_none_answers(client, redis_client):
    response = client.get("/healthz")
    assert response.status_code == 503
    body = response.json()
    assert body["down"] == ["worker"]
    assert "no Celery worker answered" in body["checks"]["worker"]
    assert body["checks"]["database"] == "ok"
    assert body["checks"]["redis"] == "ok"


@pytest.mark.django_db
def test_it_answers_503_naming_redis_when_redis_is_unreachable(client, unused_tcp_port):
    with override_settings(REDIS_URL=f"redis://127.0.0.1:{unused_tcp_port}/0"):
        response = client.get("/healthz")
    assert response.status_code == 503
    body = response.json()
    assert "redis" in body["down"]
    assert body["checks"]["redis"].startswith("redis unreachable")
    assert body["checks"]["database"] == "ok"


def test_it_is_not_cached(client, db):
    response = client.get("/healthz")
    assert "no-cache" in response["Cache-Control"] or "max-age=0" in response["Cache-Control"]


@pytest.fixture
def unused_tcp_port():
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
