"""A downstream service that demands recent TOTP for withdrawals."""
