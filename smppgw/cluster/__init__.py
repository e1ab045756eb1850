"""Several gateways on one PostgreSQL store and one Redis: leases and takeover
(``leases``), the carrier's rate limit shared by the cluster (``ratelimit``)."""
