# The checkout service: migrates the database, then serves the API on port 8000.
#   docker build -t checkout .
#   docker run --env-file .env -p 8000:8000 checkout
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

RUN groupadd --system --gid 10001 checkout \
    && useradd --system --uid 10001 --gid checkout --home-dir /app --no-create-home --shell /usr/sbin/nologin checkout

# Dependencies first, in their own layer, so a code change does not reinstall them. The install is
# editable because the Alembic migrations live beside the package (/app/migrations), not inside it.
COPY pyproject.toml README.md ./
RUN mkdir app simulator \
    && touch app/__init__.py simulator/__init__.py \
    && pip install -e . \
    && rm -rf app simulator

COPY alembic.ini ./
COPY migrations ./migrations
COPY simulator ./simulator
COPY app ./app
RUN python -m compileall -q app simulator migrations

USER checkout
EXPOSE 8000

# Ready = the database is reachable and migrated to head.
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/readyz', timeout=4)"]

# Every start applies pending migrations first (settings are checked before anything runs: production
# refuses unsafe values), then runs the command, by default the API server.
ENTRYPOINT ["/bin/sh", "-c", "checkout migrate && exec \"$@\"", "checkout-entrypoint"]
CMD ["checkout", "serve", "--host", "0.0.0.0", "--port", "8000"]
