"""Operator actions behind `mfa-service users …`, `audit export` and `db prune` (SPEC §9)."""
