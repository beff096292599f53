"""Optional Prometheus metrics (``[metrics] enabled = true``): off by default, no cost when off."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)


class Metrics:
    """What the job engine reports; every method is a no-op unless metrics are enabled."""

    def __init__(self, enabled: bool = False) -> None:
        self.enabled = enabled
        self._server: Any = None
        if not enabled:
            return
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = CollectorRegistry()
        self.jobs = Counter("seedream_jobs", "Jobs that reached a final state", ["state"], registry=self.registry)
        self.errors = Counter("seedream_errors", "Job failures by error class", ["code"], registry=self.registry)
        self.images = Counter("seedream_images", "Images generated", ["provider"], registry=self.registry)
        self.refusals = Counter("seedream_quota_refusals", "Requests refused by quota", registry=self.registry)
        self.latency = Histogram(
            "seedream_provider_seconds",
            "Time from submit to images downloaded",
            ["provider"],
            buckets=(1, 2, 5, 10, 20, 30, 60, 120, 300, 600),
            registry=self.registry,
        )
        self.queue_depth = Gauge("seedream_queue_depth", "Jobs waiting", registry=self.registry)
        self.jobs_by_state = Gauge("seedream_jobs_by_state", "Jobs per state", ["state"], registry=self.registry)

    def job_ended(self, state: str, error_code: str | None = None) -> None:
        if self.enabled:
            self.jobs.labels(state).inc()
            if error_code:
                self.errors.labels(error_code).inc()

    def images_generated(self, provider: str, count: int, seconds: float) -> None:
        if self.enabled:
            self.images.labels(provider).inc(count)
            self.latency.labels(provider).observe(seconds)

    def quota_refused(self) -> None:
        if self.enabled:
            self.refusals.inc()

    def set_states(self, counts: dict[str, int]) -> None:
        if self.enabled:
            self.queue_depth.set(counts.get("queued", 0))
            for state, count in counts.items():
                self.jobs_by_state.labels(state).set(count)

    def serve(self, host: str, port: int) -> int:
        """Start the /metrics HTTP endpoint; returns the port it listens on."""
        if not self.enabled:
            return 0
        from prometheus_client import start_http_server

        self._server, _thread = start_http_server(port, addr=host, registry=self.registry)
        bound: int = self._server.server_port
        log.info("metrics on http://%s:%d/metrics", host, bound)
        return bound

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server = None


StateCounter = Callable[[], dict[str, int]]
