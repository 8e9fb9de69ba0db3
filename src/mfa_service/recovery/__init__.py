"""Account recovery and email verification (SPEC §10): single-use links sent by mail."""
