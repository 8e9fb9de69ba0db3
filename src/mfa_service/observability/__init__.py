"""What operators see of a running service: structured logs with a request id, Prometheus
metrics, and the one middleware that feeds both (SPEC §9)."""
