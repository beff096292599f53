"""One line per event, level from config, and secrets scrubbed from every record as a last line of defence."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterable


class RedactSecrets(logging.Filter):
    """Replace any configured secret value that slipped into a log message with ``***``."""

    def __init__(self, secrets: Iterable[str]) -> None:
        super().__init__()
        self.secrets = [s for s in secrets if len(s) >= 6]

    def filter(self, record: logging.LogRecord) -> bool:
        if self.secrets:
            message = record.getMessage()
            if any(secret in message for secret in self.secrets):
                for secret in self.secrets:
                    message = message.replace(secret, "***")
                record.msg, record.args = message, None
        return True


def configure_logging(level: str, secret_env_vars: Iterable[str] = ()) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(RedactSecrets(os.environ.get(name, "") for name in secret_env_vars))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # aiosqlite logs every statement with its parameters at DEBUG: saved provider tasks hold signed result links
    for noisy in ("discord.http", "discord.gateway", "aiohttp.access", "aiosqlite"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
