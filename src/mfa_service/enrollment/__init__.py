"""Enforced enrollment (MFA_REQUIRE_MFA): a user without a second factor logs in to an
enrollment token, good only for enrolling one, whose success answers with tokens."""
