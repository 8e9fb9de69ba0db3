// A readable sentence for every problem+json `code` the service answers (and two of the page's
// own). The test checks that every code in the OpenAPI document has one here.

export const MESSAGES = {
  invalid_credentials: "The email or password is incorrect.",
  account_disabled: "This account is disabled. Contact the service's administrators.",
  invalid_token: "Your session has ended. Please log in again.",
  invalid_refresh_token: "Your session has ended. Please log in again.",
  insufficient_user_authentication: "Please confirm it is you before doing this.",
  step_up_required: "Your account has a second factor: confirm with it instead of the password.",
  invalid_code: "That code is wrong, already used or expired. Check it and try again.",
  challenge_expired: "The sign-in attempt expired or had too many wrong codes. Log in again.",
  totp_not_pending: "There is no authenticator app setup in progress. Start it again.",
  totp_already_enabled: "An authenticator app is already set up. Turn it off first.",
  mfa_not_enabled: "Set up a second factor first (an authenticator app or a security key).",
  webauthn_not_pending: "The security key request expired. Try adding it again.",
  invalid_webauthn_response: "The security key's answer could not be verified. Try again.",
  webauthn_credential_exists: "This security key is already registered.",
  no_webauthn_credential: "You have no security key or passkey registered.",
  invalid_cursor: "The list of events changed. Start again from the newest.",
  email_taken: "An account with this email already exists. Log in instead.",
  weak_password: "This password is too common. Choose a longer, less usual one.",
  validation_error: "Some fields are not valid.",
  payload_too_large: "The request was too large.",
  rate_limited: "Too many attempts.",
  service_unavailable: "The service is temporarily unavailable. Nothing was changed.",
  overloaded: "The service is busy.",
  not_found: "It no longer exists: it was removed or ended elsewhere. Reload to see the rest.",
  method_not_allowed: "The service does not support this request.",
  http_error: "The service refused the request.",
  internal_error: "Something went wrong on the service. Try again.",
  invalid_client: "The service refused the client's credentials.",
  invalid_request: "The request was missing something the service needs.",
  invalid_reset_token: "This password-reset link is invalid, used or expired. Ask for a new one.",
  invalid_verification_token: "This verification link is invalid, used or expired. Ask for a new one.",
  email_not_verified: "Confirm your email address first: follow the link we just sent you.",
  email_already_verified: "Your email address is already verified.",
  // The page's own: no answer at all, and a browser WebAuthn refusal.
  network_error: "The service could not be reached. Check your connection and try again.",
  webauthn_cancelled: "The security key request was cancelled or timed out.",
};

/** The sentence for an ApiError (or any error): by code, else the problem's own texts. */
export function describe(error) {
  const problem = error.problem ?? {};
  let text = MESSAGES[error.code] ?? problem.detail ?? problem.title ?? String(error.message);
  if (error.code === "validation_error" && Array.isArray(problem.errors)) {
    const fields = problem.errors.map((e) => `${fieldName(e.loc)}: ${e.msg}`);
    if (fields.length) text = `${text} ${fields.join("; ")}.`;
  }
  return text;
}

function fieldName(loc) {
  const parts = (loc ?? []).filter((part) => part !== "body" && part !== "query");
  return parts.length ? parts.join(".").replaceAll("_", " ") : "request";
}
