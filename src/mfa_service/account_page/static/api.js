// The mfa-service JSON API, as a single-page app calls it: one small function per operation.
// Copy what you need. Nothing here is specific to this page.
//
// Where tokens live: the access token only in memory (this module's `tokens`), so a script
// that reads storage finds none; the refresh token in sessionStorage, so a reload of this tab
// stays signed in while closing the tab ends it. An app that can do without surviving a
// reload keeps the refresh token in memory too (set REFRESH_KEY to null).

const REFRESH_KEY = "mfa-service.refresh_token";
const TIMEOUT_MS = 30000;

/** A problem+json answer (RFC 9457): `code` is the stable string to switch on. */
export class ApiError extends Error {
  constructor(status, problem, retryAfter) {
    super(problem.title || `HTTP ${status}`);
    this.status = status;
    this.problem = problem;
    this.code = problem.code || "http_error";
    this.retryAfter = retryAfter; // seconds, from the Retry-After header (429 and 503)
  }
}

// --- tokens ---------------------------------------------------------------------------------

const tokens = {access: null};

function storedRefresh() {
  return REFRESH_KEY ? sessionStorage.getItem(REFRESH_KEY) : tokens.refresh ?? null;
}

/** Keep a TokenResponse: access token in memory, refresh token in sessionStorage. */
export function keepTokens(answer) {
  tokens.access = answer.access_token;
  if (REFRESH_KEY) sessionStorage.setItem(REFRESH_KEY, answer.refresh_token);
  else tokens.refresh = answer.refresh_token;
}

export function forgetTokens() {
  tokens.access = null;
  tokens.refresh = null;
  if (REFRESH_KEY) sessionStorage.removeItem(REFRESH_KEY);
}

export function hasSession() {
  return tokens.access !== null || storedRefresh() !== null;
}

// --- one request ----------------------------------------------------------------------------

/** fetch() to the service's own origin: JSON in, JSON (or null for 204) out, else ApiError. */
export async function request(method, path, {body, token} = {}) {
  const headers = {Accept: "application/json, application/problem+json"};
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (token) headers.Authorization = `Bearer ${token}`;
  let response;
  try {
    response = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      signal: AbortSignal.timeout(TIMEOUT_MS),
      credentials: "omit", // the service sets no cookies; tokens travel in Authorization
    });
  } catch {
    throw new ApiError(0, {code: "network_error", title: "Network error"}, null);
  }
  const text = await response.text();
  let json = null;
  try {
    json = text ? JSON.parse(text) : null;
  } catch {
    json = null;
  }
  if (!response.ok) {
    const retryAfter = Number.parseInt(response.headers.get("Retry-After") ?? "", 10);
    const problem = json && typeof json === "object" ? json : {};
    throw new ApiError(response.status, problem, Number.isFinite(retryAfter) ? retryAfter : null);
  }
  return json;
}

let refreshing = null;

/** POST /auth/refresh, once at a time: the token rotates, and a second use would end the
 * session (reuse detection). */
export function refresh() {
  refreshing ??= (async () => {
    const refreshToken = storedRefresh();
    if (!refreshToken) throw new ApiError(401, {code: "invalid_token"}, null);
    try {
      keepTokens(await request("POST", "/auth/refresh", {body: {refresh_token: refreshToken}}));
    } catch (error) {
      if (error.code === "invalid_refresh_token") forgetTokens();
      throw error;
    }
  })().finally(() => {
    refreshing = null;
  });
  return refreshing;
}

/** A call with the access token; an expired one is refreshed once and the call retried. */
export async function authed(method, path, body) {
  if (tokens.access === null) await refresh();
  try {
    return await request(method, path, {body, token: tokens.access});
  } catch (error) {
    if (error.code !== "invalid_token" || storedRefresh() === null) throw error;
    await refresh();
    return request(method, path, {body, token: tokens.access});
  }
}

// --- accounts and login (SPEC §2) -------------------------------------------------------------

export const register = (email, password) =>
  request("POST", "/auth/register", {body: {email, password}});

/** {status: "authenticated", …tokens} or {status: "mfa_required", challenge_token, methods}. */
export async function login(email, password) {
  const answer = await request("POST", "/auth/login", {body: {email, password}});
  if (answer.status === "authenticated") keepTokens(answer);
  return answer;
}

/** proof: {code} or {backup_code} or {webauthn: AuthenticationResponseJSON}. */
export async function answerChallenge(challengeToken, proof) {
  const answer = await request("POST", "/mfa/challenge", {
    body: {challenge_token: challengeToken, ...proof},
  });
  keepTokens(answer);
  return answer;
}

export async function passkeyLogin() {
  const options = await request("POST", "/auth/passkey/options");
  const credential = await webauthnGet(options);
  const answer = await request("POST", "/auth/passkey", {body: {credential}});
  keepTokens(answer);
  return answer;
}

/** scope: "local" (this session), "others" or "global". */
export async function logout(scope = "local") {
  try {
    await authed("POST", "/auth/logout", {refresh_token: storedRefresh() ?? undefined, scope});
  } finally {
    forgetTokens();
  }
}

export const me = () => authed("GET", "/users/me");
export const mfaState = () => authed("GET", "/mfa");

// --- proving yourself again (SPEC §4, recent authentication) ----------------------------------

/** proof: {code} or {backup_code} or {webauthn}; for users with a second factor. */
export async function stepUp(proof) {
  keepTokens(await authed("POST", "/mfa/step-up", proof));
}

export async function stepUpWithSecurityKey() {
  const options = await authed("POST", "/mfa/step-up/options");
  await stepUp({webauthn: await webauthnGet(options)});
}

/** The password again; for users without a second factor. */
export async function reauthenticate(password) {
  keepTokens(await authed("POST", "/auth/reauthenticate", {password}));
}

// --- TOTP and backup codes ------------------------------------------------------------------

/** {secret, otpauth_uri, qr_svg}: pending until confirmed. */
export const totpSetup = () => authed("POST", "/mfa/totp/setup");

/** {mfa_enabled: true, backup_codes} (an empty list when another factor came first). */
export const totpConfirm = (code) => authed("POST", "/mfa/totp/confirm", {code});

/** proof: {code} or {backup_code}, with the password. */
export const totpDisable = (password, proof) =>
  authed("DELETE", "/mfa/totp", {password, ...proof});

/** {backup_codes}: every earlier code stops working. */
export const regenerateBackupCodes = (code) => authed("POST", "/mfa/backup-codes", {code});

// --- security keys and passkeys (SPEC §7) ---------------------------------------------------

export const credentials = () => authed("GET", "/mfa/webauthn/credentials");

/** {credential, backup_codes}; passkey: a discoverable credential for passwordless login. */
export async function addCredential(name, passkey) {
  const options = await authed("POST", "/mfa/webauthn/registrations/options", {passkey});
  const credential = await webauthnCreate(options);
  return authed("POST", "/mfa/webauthn/registrations", {credential, name});
}

export const renameCredential = (id, name) =>
  authed("PATCH", `/mfa/webauthn/credentials/${encodeURIComponent(id)}`, {name});

export const removeCredential = (id) =>
  authed("DELETE", `/mfa/webauthn/credentials/${encodeURIComponent(id)}`);

/** The browser's own WebAuthn, fed the service's JSON options unchanged. */
async function webauthnCreate(optionsJSON) {
  const publicKey = PublicKeyCredential.parseCreationOptionsFromJSON(optionsJSON);
  return (await navigator.credentials.create({publicKey})).toJSON();
}

async function webauthnGet(optionsJSON) {
  const publicKey = PublicKeyCredential.parseRequestOptionsFromJSON(optionsJSON);
  return (await navigator.credentials.get({publicKey})).toJSON();
}

/** Options and assertion for a challenge that offers webauthn (ChallengeResponse.webauthn). */
export const assertForChallenge = (requestOptions) => webauthnGet(requestOptions);

// --- enforced enrollment (MFA_REQUIRE_MFA): the enrollment token of a login --------------------

/** {secret, otpauth_uri, qr_svg}, with the login's enrollment token. */
export const enrollTotpSetup = (enrollmentToken) =>
  request("POST", "/mfa/totp/setup", {token: enrollmentToken});

/** {backup_codes, …tokens}: the enrollment's success signs in. */
export async function enrollTotpConfirm(enrollmentToken, code) {
  const answer = await request("POST", "/mfa/totp/confirm", {body: {code}, token: enrollmentToken});
  keepTokens(answer);
  return answer;
}

/** {credential, backup_codes, …tokens}: a security key as the first factor signs in too. */
export async function enrollSecurityKey(enrollmentToken, name) {
  const token = enrollmentToken;
  const options = await request("POST", "/mfa/webauthn/registrations/options", {
    body: {passkey: false},
    token,
  });
  const credential = await webauthnCreate(options);
  const answer = await request("POST", "/mfa/webauthn/registrations", {
    body: {credential, name},
    token,
  });
  keepTokens(answer);
  return answer;
}

// --- account recovery and email verification (SPEC §10) ------------------------------------

/** {detail}: the same answer whether or not the email has an account. */
export const forgotPassword = (email) =>
  request("POST", "/auth/password/forgot", {body: {email}});

/** token: from the mailed link. proof: nothing, {code}, {backup_code} or {webauthn}; a user
 * with a second factor must give one (401 invalid_code without it). Ends every session. */
export const resetPassword = (token, newPassword, proof = {}) =>
  request("POST", "/auth/password/reset", {body: {token, new_password: newPassword, ...proof}});

/** {webauthn}: a security key's assertion bound to this reset link. */
export async function resetProofWithSecurityKey(token) {
  const options = await request("POST", "/auth/password/reset/options", {body: {token}});
  return {webauthn: await webauthnGet(options)};
}

export const requestEmailVerification = () => authed("POST", "/auth/email/verification");

export const verifyEmail = (token) => request("POST", "/auth/email/verify", {body: {token}});

// --- sessions and security events (SPEC §8, §2) ---------------------------------------------

export const sessions = () => authed("GET", "/users/me/sessions");

export const endSession = (id) => authed("DELETE", `/users/me/sessions/${encodeURIComponent(id)}`);

/** {items, next_cursor}: newest first; pass next_cursor back for the next page. */
export function events(limit, cursor) {
  const query = new URLSearchParams({limit: String(limit)});
  if (cursor) query.set("cursor", cursor);
  return authed("GET", `/users/me/events?${query}`);
}
