"""An OTLP/gRPC trace receiver for tests: it keeps the spans it receives in memory and answers queries
about them over HTTP, standing in for Jaeger where Jaeger's image cannot be had (the CI smoke test)."""
