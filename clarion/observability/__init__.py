"""What lets an operator see into a running Clarion: the request observer (request ids, per-route
metrics, the access log), the Prometheus metrics of a runtime, and the logging set-up."""
