# stranger-bridge: slim Python base, non-root user, dependencies from the lock, state on a volume.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 \
    STRANGER_BRIDGE_BRIDGE__STATE=/var/lib/stranger-bridge/state.sqlite3

RUN useradd --system --home-dir /var/lib/stranger-bridge --shell /usr/sbin/nologin stranger-bridge \
    && mkdir -p /var/lib/stranger-bridge /etc/stranger-bridge \
    && chown stranger-bridge: /var/lib/stranger-bridge

WORKDIR /app
COPY requirements.lock pyproject.toml README.md ./
# Runtime packages only, at the pinned versions of the lock (the test tools are not installed).
RUN grep -iE '^(aiohttp|aiohappyeyeballs|aiosignal|attrs|frozenlist|multidict|propcache|yarl|idna|pydantic|pydantic-core|pydantic-settings|python-dotenv|typing-extensions|typing-inspection|annotated-types|discord\.py|audioop-lts|matrix-nio|aiofiles|aiohttp-socks|python-socks|h11|h2|hpack|hyperframe|jsonschema|jsonschema-specifications|referencing|rpds-py|pycryptodome|unpaddedbase64|redis)==' requirements.lock > /tmp/runtime.txt \
    && pip install -r /tmp/runtime.txt
COPY bridge ./bridge
COPY plugins ./plugins
RUN pip install --no-deps . && rm -rf /app/bridge /app/plugins

USER stranger-bridge
VOLUME ["/var/lib/stranger-bridge"]
# The web page listens on 127.0.0.1 by default; publish it with `bind = "0.0.0.0:8080"` in the config.
EXPOSE 8080
ENTRYPOINT ["stranger-bridge"]
CMD ["run", "-c", "/etc/stranger-bridge/config.toml"]
