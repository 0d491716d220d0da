# The service image: the API (default command), and with another command the Celery worker,
# beat, the Alembic migrations and the ops CLI (`triage --help`). See docker-compose.yml.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# An unprivileged user: nothing in the service needs root.
RUN groupadd --system --gid 10001 triage \
    && useradd --system --uid 10001 --gid triage --home-dir /app --shell /usr/sbin/nologin triage

WORKDIR /app

# Dependencies first, from pyproject.toml alone, so editing the code does not reinstall them.
COPY pyproject.toml README.md ./
RUN python -c "import tomllib; deps = tomllib.load(open('pyproject.toml', 'rb'))['project']; \
print('\n'.join(deps['dependencies']))" > /tmp/requirements.txt
RUN pip install -r /tmp/requirements.txt

# The project itself (.dockerignore keeps tests, the venv, .git and .env out).
COPY . .
# Code stays owned by root (read-only for the service user); the cold archive directory
# (a volume in docker-compose.yml, ARCHIVE_DIR) is the one place it writes.
RUN pip install --no-deps . \
    && mkdir -p /var/lib/triage/archive && chown triage:triage /var/lib/triage/archive

USER triage
EXPOSE 8000

# Behind nginx: trust X-Forwarded-* from the proxy network. Two or more replicas are
# separate containers; scale with `docker compose up --scale api=N`.
CMD ["triage", "serve", "--host", "0.0.0.0", "--port", "8000", "--proxy-headers"]
