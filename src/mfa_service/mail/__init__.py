"""Mail (SPEC §10): messages built from the package's templates, sent by the outbox worker
through SMTP or, with no SMTP configured, written as .eml files under <data dir>/outbox/."""
