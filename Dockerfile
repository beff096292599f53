FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN useradd --create-home --uid 10001 seedream
WORKDIR /app
# Pinned: every dependency at the version CI tested (constraints.txt; pyproject.toml keeps the ranges).
COPY pyproject.toml README.md LICENSE constraints.txt ./
COPY bot ./bot
COPY cogs ./cogs
RUN pip install -c constraints.txt .

# Database and images live on a volume; the config may be mounted at /data/config.toml. A bind-mounted
# host folder must be writable by uid 10001 (`sudo chown 10001 ./data`), or the bot stops at start with
# one line naming the folder.
RUN mkdir /data && chown seedream:seedream /data
VOLUME ["/data"]
WORKDIR /data
# These environment values win over a mounted config.toml (`seedream-bot check-config` marks them).
# Metrics listen on every interface inside the container so `-p 9108:9108` reaches them once
# [metrics] enabled = true (or SEEDREAM_METRICS__ENABLED=true).
ENV SEEDREAM_STORAGE__DATABASE=/data/seedream-bot.sqlite3 \
    SEEDREAM_STORAGE__DATA_DIR=/data/images \
    SEEDREAM_METRICS__HOST=0.0.0.0
EXPOSE 9108
USER seedream
# Healthy while the bot writes its heartbeat into the database (every minute) and that database is writable.
HEALTHCHECK --interval=60s --timeout=20s --start-period=180s --retries=3 CMD ["seedream-bot", "health"]
ENTRYPOINT ["seedream-bot"]
CMD ["run"]
