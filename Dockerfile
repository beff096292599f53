FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
RUN useradd --create-home --uid 10001 seedream
WORKDIR /app
COPY pyproject.toml README.md ./
COPY bot ./bot
COPY cogs ./cogs
RUN pip install .

# Database and images live on a volume; the config may be mounted at /data/config.toml.
RUN mkdir /data && chown seedream:seedream /data
VOLUME ["/data"]
WORKDIR /data
ENV SEEDREAM_STORAGE__DATABASE=/data/seedream-bot.sqlite3 SEEDREAM_STORAGE__DATA_DIR=/data/images
USER seedream
ENTRYPOINT ["seedream-bot"]
CMD ["run"]
