"""ServiceControl: a gRPC control plane for the lifecycle of hosted web services."""
