"""For operators: the operations page, /metrics, the fleet's telemetry and the trace index."""
