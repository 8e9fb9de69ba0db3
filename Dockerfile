# The service image: `docker build -t mfa-service .`, then see docker-compose.yml.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore

WORKDIR /app
# README.md is the package's readme (pyproject.toml): the build needs it.
COPY pyproject.toml README.md ./
COPY src ./src
RUN pip install .

# A numeric user, so that runAsNonRoot-style checks can verify it. /data holds the SQLite file
# and the generated development data key; a named volume mounted there starts with this owner.
RUN groupadd --gid 10001 mfa \
    && useradd --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin mfa \
    && mkdir /data \
    && chown 10001:10001 /data
ENV MFA_DATA_DIR=/data
USER 10001:10001

EXPOSE 8000
CMD ["mfa-service", "serve", "--host", "0.0.0.0", "--port", "8000"]
