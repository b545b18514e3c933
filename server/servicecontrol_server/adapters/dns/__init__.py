"""DNS lookups for certificate validation."""
