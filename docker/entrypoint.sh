#!/bin/sh
# Entrypoint of the reengage image: web | worker | beat | migrate | manage ARGS…
set -e
case "${1:-web}" in
    web)
        python manage.py migrate --noinput
        exec gunicorn reengage.wsgi:application \
            --bind 0.0.0.0:8000 \
            --workers "${WEB_CONCURRENCY:-2}" \
            --access-logfile - --forwarded-allow-ips "${FORWARDED_ALLOW_IPS:-127.0.0.1}"
        ;;
    worker)
        exec celery -A reengage worker -l "${LOG_LEVEL:-INFO}" \
            --concurrency "${WORKER_CONCURRENCY:-2}"
        ;;
    beat)
        exec celery -A reengage beat -l "${LOG_LEVEL:-INFO}" -s /tmp/celerybeat-schedule
        ;;
    migrate)
        exec python manage.py migrate --noinput
        ;;
    manage)
        shift
        exec python manage.py "$@"
        ;;
    *)
        exec "$@"
        ;;
esac
