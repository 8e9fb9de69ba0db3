"""Services built on the mfa_verify library."""
