"""Prometheus metrics: requests, latencies, bytes and errors per location, health, uploads."""

from __future__ import annotations

import os

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


class Metrics:
    """One registry per gateway (tests run several gateways in one process)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("s3gw_requests", "S3 requests by operation and status",
                                ["operation", "status"], registry=r)
        self.request_seconds = Histogram("s3gw_request_duration_seconds",
                                         "S3 request latency by operation", ["operation"],
                                         buckets=LATENCY_BUCKETS, registry=r)
        self.backend_seconds = Histogram("s3gw_backend_duration_seconds",
                                         "Backend call latency by location and call",
                                         ["location", "call"], buckets=LATENCY_BUCKETS, registry=r)
        self.backend_bytes = Counter("s3gw_backend_bytes", "Bytes moved to (in) and from (out) "
                                     "each location", ["location", "direction"], registry=r)
        self.backend_errors = Counter("s3gw_backend_errors", "Failed backend calls by location "
                                      "and kind", ["location", "kind"], registry=r)
        # multiprocess_mode (workers: N, prometheus multiprocess mode): the value last set by
        # any worker is the answer; ignored with one process.
        self.location_up = Gauge("s3gw_location_up", "1 when the location's last health check "
                                 "passed, 0 when down, -1 when unknown", ["location", "type"],
                                 registry=r, multiprocess_mode="mostrecent")
        self.open_uploads = Gauge("s3gw_multipart_uploads_open",
                                  "Multipart uploads started and not yet completed or aborted",
                                  registry=r, multiprocess_mode="mostrecent")
        self.garbage_pending = Gauge("s3gw_garbage_pending", "Pieces, parts and uploads no "
                                     "record references, waiting for the collector", registry=r,
                                     multiprocess_mode="mostrecent")
        self.intents_open = Gauge("s3gw_writes_in_flight", "Writes whose bytes are being stored "
                                  "and not yet committed (the intents ledger)", registry=r,
                                  multiprocess_mode="mostrecent")

    def render(self) -> bytes:
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            # workers: N (gateway/workers.py): every worker's values, summed from the files
            # they all write.
            from prometheus_client import multiprocess

            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)
            return generate_latest(registry)
        return generate_latest(self.registry)
