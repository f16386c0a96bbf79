# One image for web, worker and beat (see docker-compose.yml).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 \
    REENGAGE_EMBEDDED_SERVICES=0
WORKDIR /app

# Optional extras, comma-separated, for ESPs that need another package:
# `docker build --build-arg EXTRAS=ses .` for Amazon SES (docs/email.md).
ARG EXTRAS=""
COPY pyproject.toml README.md ./
COPY reengage reengage
COPY tracking tracking
COPY campaigns campaigns
RUN pip install --disable-pip-version-check ".${EXTRAS:+[$EXTRAS]}"

COPY . .
# collectstatic needs settings but no services; use throwaway values.
RUN DEBUG=0 SECRET_KEY=build-only ANYMAIL_WEBHOOK_SECRET=build:only FIELD_ENCRYPTION_KEY=build-only-not-a-real-key-0123456789 DATABASE_URL=postgres://build@localhost/build \
    REDIS_URL=redis://localhost:6379/0 python manage.py collectstatic --noinput

RUN useradd --system --uid 1000 reengage && chown -R reengage /app
USER reengage
EXPOSE 8000
ENTRYPOINT ["docker/entrypoint.sh"]
CMD ["web"]
