"""Standard Webhooks deliveries of audit events (SPEC §9), from the outbox."""
