# halodb in a container: Python 3.11 + Microsoft ODBC Driver 18 for SQL Server.
#
# The default command runs the scheduled job loop:
#   run-every halodb AUTO /config/appsettings.json
# i.e. `halodb AUTO` now and then every HALODB_INTERVAL_SECONDS (default 300).
# Mount the configuration at /config; logs are written to /work/logs (the working directory's logs/).
#
#   docker build -t halodb .
#   docker run -v "$PWD/config:/config" -v halodb-logs:/work/logs halodb
#   docker run --rm -v "$PWD/config:/config" halodb halodb validate --config /config/appsettings.json
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# A failing command anywhere in a pipe fails the build (the key download below is piped into gpg).
SHELL ["/bin/bash", "-o", "pipefail", "-c"]

# Microsoft ODBC Driver 18 (msodbcsql18) from Microsoft's Debian 12 (bookworm) repository, signed with
# Microsoft's package key; unixODBC is the driver manager pyodbc links against. The driver's licence must
# be accepted (ACCEPT_EULA=Y). curl and gnupg are only needed to fetch the key and are removed again.
RUN set -eux; \
    apt-get update; \
    apt-get install -y --no-install-recommends ca-certificates curl gnupg; \
    curl -fsSL https://packages.microsoft.com/keys/microsoft.asc \
        | gpg --dearmor -o /usr/share/keyrings/microsoft-prod.gpg; \
    echo "deb [arch=$(dpkg --print-architecture) signed-by=/usr/share/keyrings/microsoft-prod.gpg] https://packages.microsoft.com/debian/12/prod bookworm main" \
        > /etc/apt/sources.list.d/microsoft-prod.list; \
    apt-get update; \
    ACCEPT_EULA=Y apt-get install -y --no-install-recommends msodbcsql18 unixodbc; \
    apt-get purge -y --auto-remove curl gnupg; \
    rm -rf /var/lib/apt/lists/*; \
    odbcinst -q -d -n "ODBC Driver 18 for SQL Server"

# halodb itself (the build context is filtered by .dockerignore: no .git, .venv, tests, local configs).
COPY . /tmp/halodb-src
RUN set -eux; \
    pip install /tmp/halodb-src; \
    install -m 0755 /tmp/halodb-src/docker/run-every.sh /usr/local/bin/run-every; \
    rm -rf /tmp/halodb-src; \
    halodb --help > /dev/null

# Unprivileged user. /config and /work/logs are created owned by it, so named volumes mounted there
# start out writable (Docker copies ownership into an empty named volume on first use).
RUN set -eux; \
    groupadd --system --gid 10001 halodb; \
    useradd --system --uid 10001 --gid halodb --home-dir /work --no-create-home --shell /usr/sbin/nologin halodb; \
    mkdir -p /work/logs /config; \
    chown -R halodb:halodb /work /config

# Numeric, so that orchestrators (e.g. Kubernetes runAsNonRoot) can tell it is not root; 10001 is "halodb".
USER 10001:10001
WORKDIR /work

ENV HALODB_INTERVAL_SECONDS=300
CMD ["run-every", "halodb", "AUTO", "/config/appsettings.json"]
