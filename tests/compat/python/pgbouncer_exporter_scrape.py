"""Scrapes lakepool once with prometheus-pgbouncer-exporter 2.1.2's collector, as its HTTP
server would on a Prometheus scrape, and prints the exposition text (no port is bound).

EXPORTER_DSN: the libpq DSN of the admin console (dbname=pgbouncer). Used by
tests/e2e/pgbouncer_compat.rs.
"""

import os
import sys

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_pgbouncer_exporter.collector import PgbouncersMetricsCollector
from prometheus_pgbouncer_exporter.config import PgbouncerConfig

config = PgbouncerConfig({"dsn": os.environ["EXPORTER_DSN"], "connect_timeout": 10})
registry = CollectorRegistry()
registry.register(PgbouncersMetricsCollector([config]))
sys.stdout.write(generate_latest(registry).decode())
