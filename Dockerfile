# stranger-bridge: slim Python base, non-root user, dependencies from the lock, state on a volume.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 \
    STRANGER_BRIDGE_BRIDGE__STATE=/var/lib/stranger-bridge/state.sqlite3

RUN useradd --system --home-dir /var/lib/stranger-bridge --shell /usr/sbin/nologin stranger-bridge \
    && mkdir -p /var/lib/stranger-bridge /etc/stranger-bridge \
    && chown stranger-bridge: /var/lib/stranger-bridge

WORKDIR /app
COPY requirements.lock pyproject.toml README.md ./
COPY bridge ./bridge
COPY plugins ./plugins
# The package with its runtime extras, every dependency at the lock's pinned version (the test
# tools are not installed). tests/core/test_packaging.py runs this very line in a clean venv.
RUN pip install -c requirements.lock ".[discord,matrix,redis]" && rm -rf /app/bridge /app/plugins

USER stranger-bridge
# Relative paths of the config (a Matrix store_path, the Matrix crypto_store keys) land on the state volume.
WORKDIR /var/lib/stranger-bridge
VOLUME ["/var/lib/stranger-bridge"]
# The web page listens on 127.0.0.1 by default; publish it with `bind = "0.0.0.0:8080"` in the config.
EXPOSE 8080
ENTRYPOINT ["stranger-bridge"]
CMD ["run", "-c", "/etc/stranger-bridge/config.toml"]
