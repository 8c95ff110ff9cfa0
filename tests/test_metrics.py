"""Operation metrics: client-chosen names give a bounded number of series."""

from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)

from graph.metrics import OTHER_OPERATIONS, OperationSeries, record_operation


def _series(max_names: int) -> tuple[OperationSeries, CollectorRegistry]:
    registry = CollectorRegistry()
    requests = Counter("ops", "Operations.", ["operation", "code"], registry=registry)
    latency = Histogram("ops_seconds", "Latency.", ["operation"], registry=registry)
    return OperationSeries(requests, latency, max_names), registry


def _counted(registry: CollectorRegistry) -> dict[str, float]:
    return {
        sample.labels["operation"]: sample.value
        for metric in registry.collect()
        if metric.name == "ops"
        for sample in metric.samples
        if sample.name == "ops_total"
    }


def test_names_past_the_limit_are_counted_as_other():
    series, registry = _series(max_names=3)
    for index in range(50):
        requests, latency = series.get(f"Name{index}", "OK")
        requests.inc()
        latency.observe(0.001)

    counted = _counted(registry)
    assert counted == {"Name0": 1, "Name1": 1, "Name2": 1, OTHER_OPERATIONS: 47}
    text = generate_latest(registry).decode()
    assert "Name3" not in text


def test_known_name_keeps_its_series_under_every_code():
    series, registry = _series(max_names=2)
    series.get("Predict", "OK")[0].inc()
    series.get("Flood1", "OK")[0].inc()
    series.get("Flood2", "OK")[0].inc()
    series.get("Predict", "FORBIDDEN")[0].inc()

    assert series.get("Predict", "FORBIDDEN") is series.get("Predict", "FORBIDDEN")
    codes = {
        (sample.labels["operation"], sample.labels["code"])
        for metric in registry.collect()
        if metric.name == "ops"
        for sample in metric.samples
        if sample.name == "ops_total"
    }
    assert codes == {
        ("Predict", "OK"),
        ("Flood1", "OK"),
        (OTHER_OPERATIONS, "OK"),
        ("Predict", "FORBIDDEN"),
    }


def test_malformed_operation_name_counts_as_invalid():
    record_operation("bad\nname", [], 0.001, None)

    counted = REGISTRY.get_sample_value(
        "fieldguard_graphql_requests_total", {"operation": "invalid", "code": "OK"}
    )
    assert counted is not None
    assert counted >= 1
    assert 'operation="bad' not in generate_latest(REGISTRY).decode()
