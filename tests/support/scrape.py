"""Scraping a firebreak endpoint and reading samples out of the Prometheus text format."""

from __future__ import annotations

import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from tests.support.servers import free_port


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:  # loopback only
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """{(sample name, labels): value} for every sample in a scrape."""
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return found


def value(
    found: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str
) -> float:
    return found[(name, frozenset(labels.items()))]


@contextmanager
def running_exporter(config: Path, *args: str, log: Path | None = None) -> Iterator[str]:
    """``firebreak exporter`` on a free loopback port, answering; yields its base URL. log:
    where its stderr goes (by default nowhere)."""
    port = free_port()
    exporter = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "firebreak",
            "-c",
            str(config),
            "exporter",
            "--listen",
            f"127.0.0.1:{port}",
            *args,
        ],
        stderr=log.open("wb") if log is not None else subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                get(f"{base}/healthz")
                break
            except OSError:
                assert time.monotonic() < deadline and exporter.poll() is None, (
                    "the exporter never answered"
                )
                time.sleep(0.2)
        yield base
    finally:
        exporter.terminate()
        exporter.wait(10)
