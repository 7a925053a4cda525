"""The monitoring profile without Docker: docker-compose.yml, the Prometheus configuration and the
Grafana provisioning parse, point at each other, and every query of the dashboard names a metric
the service really exposes."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app import metrics

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"


def _yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def _mounts(service: dict[str, Any]) -> dict[str, Path]:
    """Container path -> repository path of a service's bind mounts."""
    mounts = {}
    for volume in service.get("volumes", []):
        source, target, *_ = volume.split(":")
        if source.startswith("./"):
            mounts[target] = ROOT / source
    return mounts


def test_the_monitoring_profile_runs_prometheus_and_grafana_on_the_deploy_files() -> None:
    compose = _yaml(ROOT / "docker-compose.yml")
    services = compose["services"]
    for name in ("prometheus", "grafana"):
        assert services[name]["profiles"] == ["monitoring"]
        assert all(port.startswith("127.0.0.1:") for port in services[name]["ports"])
        for target, source in _mounts(services[name]).items():
            assert source.exists(), f"{name} mounts {source}, which is not in the repository ({target})"
    assert "profiles" not in services["api"] and "profiles" not in services["db"]
    # The api and Prometheus share one token: the api reads it, Prometheus gets it as a file.
    assert services["api"]["environment"]["METRICS_TOKEN"] == compose["configs"]["metrics_token"]["content"]

    prometheus = _yaml(DEPLOY / "prometheus" / "prometheus.yml")
    (job,) = prometheus["scrape_configs"]
    assert job["metrics_path"] == "/metrics"
    assert job["static_configs"] == [{"targets": ["api:8000"]}]
    token_file = job["authorization"]["credentials_file"]
    assert {"source": "metrics_token", "target": token_file} in services["prometheus"]["configs"]
    prometheus_mounts = _mounts(services["prometheus"])
    assert prometheus_mounts["/etc/prometheus/prometheus.yml"] == DEPLOY / "prometheus" / "prometheus.yml"

    grafana_mounts = _mounts(services["grafana"])
    provisioning = grafana_mounts["/etc/grafana/provisioning"]
    (source,) = _yaml(provisioning / "datasources" / "prometheus.yml")["datasources"]
    assert source["url"] == "http://prometheus:9090" and source["uid"] == "prometheus"
    (provider,) = _yaml(provisioning / "dashboards" / "checkout.yml")["providers"]
    dashboards = grafana_mounts[provider["options"]["path"]]
    assert (dashboards / "checkout.json").exists()


def _exposed_names(exposition: bytes) -> set[str]:
    return {
        sample.name
        for family in text_string_to_metric_families(exposition.decode())
        for sample in family.samples
    }


async def test_every_dashboard_query_names_an_exposed_metric(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    # Every family once, so each of its sample names is in the exposition.
    metrics.HTTP_REQUESTS.labels("GET", "/x", "200")
    metrics.HTTP_REQUEST_DURATION.labels("GET", "/x")
    metrics.PAYMENT_TRANSITIONS.labels("p", "a", "b", "api")
    metrics.PROVIDER_REQUESTS.labels("p", "GET /", "ok")
    metrics.PROVIDER_REQUEST_DURATION.labels("p", "GET /")
    metrics.WEBHOOKS.labels("p", "accepted", "")
    metrics.SWEEPER_CLAIMS.labels("refund")
    exposed = _exposed_names(metrics.exposition(await metrics.database_gauges(sessionmaker)))
    assert "checkout_inbox_depth" in exposed and "checkout_database_gauges_up" in exposed

    dashboard = json.loads((DEPLOY / "grafana" / "dashboards" / "checkout.json").read_text())
    queries = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    assert len(queries) >= 10
    named = {name for query in queries for name in re.findall(r"\bcheckout_[a-z_]+\b", query)}
    assert named - exposed == set()
    # Every family shows somewhere.
    for family in (
        "checkout_http_requests_total",
        "checkout_http_request_duration_seconds_bucket",
        "checkout_payment_transitions_total",
        "checkout_provider_requests_total",
        "checkout_provider_request_duration_seconds_bucket",
        "checkout_webhooks_total",
        "checkout_sweeper_claims_total",
        "checkout_sweeper_errors_total",
        "checkout_inbox_depth",
        "checkout_inbox_oldest_unprocessed_age_seconds",
        "checkout_orders_needs_review",
    ):
        assert family in named, family
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            assert target["datasource"] == {"type": "prometheus", "uid": "prometheus"}
