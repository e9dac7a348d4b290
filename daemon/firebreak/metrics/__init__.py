"""Prometheus metrics: one collector that reads the run history at scrape time, and the
HTTP endpoint (/metrics, /healthz, /readyz) the daemon and ``firebreak exporter`` serve."""
