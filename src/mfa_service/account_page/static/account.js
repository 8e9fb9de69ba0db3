// The account page: what a person sees. Every call to the service is in api.js.
import * as api from "./api.js";
import {describe} from "./messages.js";

const $ = (id) => document.getElementById(id);
const EVENTS_PAGE = 10;

const state = {challenge: null, enrollment: null, mfa: null, eventsCursor: null, countdown: null,
  link: null};
// The views a mailed link opens: /account/<view>?token=… (site.py serves this page for them).
const LINK_VIEWS = ["reset-password", "verify-email"];

// --- small DOM helpers: text only, never markup ---------------------------------------------

function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (key === "text") node.textContent = value;
    else if (key.startsWith("aria-") || key === "for") node.setAttribute(key, value);
    else node[key] = value;
  }
  node.append(...children.filter((child) => child !== null && child !== undefined));
  return node;
}

function show(id, visible = true) {
  $(id).hidden = !visible;
}

function when(iso) {
  if (!iso) return "never";
  return `${new Date(iso).toISOString().slice(0, 16).replace("T", " ")} UTC`;
}

function notice(text) {
  $("notice").textContent = text;
}

// --- problems, with the Retry-After countdown ----------------------------------------------

function clearProblem() {
  clearInterval(state.countdown);
  state.countdown = null;
  show("problem", false);
  $("problem-text").textContent = "";
  $("problem-retry").textContent = "";
}

function showProblem(error) {
  clearProblem();
  notice("");
  $("problem-text").textContent = describe(error);
  show("problem");
  if (error.retryAfter && (error.status === 429 || error.status === 503)) {
    const until = Date.now() + error.retryAfter * 1000;
    const tick = () => {
      const left = Math.max(0, Math.ceil((until - Date.now()) / 1000));
      const minutes = Math.floor(left / 60);
      const seconds = String(left % 60).padStart(2, "0");
      $("problem-retry").textContent =
        left > 0 ? `You can try again in ${minutes}:${seconds}.` : "You can try again now.";
      if (left === 0) clearInterval(state.countdown);
    };
    tick();
    show("problem-retry");
    state.countdown = setInterval(tick, 1000);
  }
}

/** Any failure as a problem a person can read: the service's own, the browser's WebAuthn
 * refusals (DOMException), and a bug in this page (logged for the developer). */
function asProblem(error) {
  if (error instanceof api.ApiError) return error;
  if (error instanceof DOMException) {
    const code = error.name === "InvalidStateError" ? "webauthn_credential_exists" : "webauthn_cancelled";
    return new api.ApiError(0, {code, title: error.message}, null);
  }
  console.error(error);
  return new api.ApiError(0, {code: "internal_error", title: String(error)}, null);
}

/** Runs an action for a form or button: its controls disabled meanwhile, problems shown. */
async function act(control, action) {
  const controls = control.tagName === "FORM" ? [...control.elements] : [control];
  controls.forEach((c) => (c.disabled = true));
  clearProblem();
  try {
    await action();
  } catch (error) {
    const problem = asProblem(error);
    if (problem.code === "invalid_token" || problem.code === "invalid_refresh_token") {
      api.forgetTokens();
      showSignedOut();
    }
    showProblem(problem);
  } finally {
    controls.forEach((c) => (c.disabled = false));
  }
}

function on(id, handler) {
  const node = $(id);
  const type = node.tagName === "FORM" ? "submit" : "click";
  node.addEventListener(type, (event) => {
    event.preventDefault();
    act(node, () => handler(node));
  });
}

// --- recent authentication: step up, then retry ----------------------------------------------

/** `action()`, and once more after the person confirms it is them, if the service asks. */
async function withStepUp(action) {
  try {
    return await action();
  } catch (error) {
    if (error.code !== "insufficient_user_authentication" && error.code !== "step_up_required") {
      throw error;
    }
    if (!(await stepUpDialog())) throw error;
    return action();
  }
}

let stepUpDone = null;

async function stepUpDialog() {
  const mfa = await api.mfaState();
  const factors = mfa.mfa_enabled;
  show("step-up-code-form", factors && mfa.totp.enabled);
  show("step-up-webauthn-row", factors && mfa.webauthn.credentials > 0);
  show("step-up-backup-form", factors && mfa.backup_codes.remaining > 0);
  show("step-up-password-form", !factors);
  show("step-up-problem", false);
  for (const id of ["step-up-code", "step-up-backup", "step-up-password"]) $(id).value = "";
  const dialog = $("step-up");
  dialog.showModal();
  dialog.querySelector("form:not([hidden]) input, p:not([hidden]) > button")?.focus();
  return new Promise((resolve) => {
    stepUpDone = (ok) => {
      stepUpDone = null;
      dialog.close();
      resolve(ok);
    };
  });
}

async function stepUpWith(control, prove) {
  const controls = control.tagName === "FORM" ? [...control.elements] : [control];
  controls.forEach((c) => (c.disabled = true));
  show("step-up-problem", false);
  try {
    await prove();
    stepUpDone?.(true);
  } catch (error) {
    $("step-up-problem").textContent = describe(asProblem(error));
    show("step-up-problem");
  } finally {
    controls.forEach((c) => (c.disabled = false));
  }
}

function proofFrom(text) {
  const compact = text.replace(/\s+/g, "");
  return /^\d{6}$/.test(compact) ? {code: compact} : {backup_code: text.trim()};
}

function wireStepUp() {
  const submit = (id, prove) =>
    $(id).addEventListener("submit", (event) => {
      event.preventDefault();
      stepUpWith($(id), prove);
    });
  submit("step-up-code-form", () => api.stepUp({code: $("step-up-code").value}));
  submit("step-up-backup-form", () => api.stepUp({backup_code: $("step-up-backup").value}));
  submit("step-up-password-form", () => api.reauthenticate($("step-up-password").value));
  $("step-up-webauthn").addEventListener("click", () =>
    stepUpWith($("step-up-webauthn"), () => api.stepUpWithSecurityKey()),
  );
  $("step-up-cancel").addEventListener("click", () => stepUpDone?.(false));
  $("step-up").addEventListener("cancel", () => stepUpDone?.(false));
}

// --- views ----------------------------------------------------------------------------------

function showView(id) {
  for (const view of ["signed-out", "challenge", "enroll", "reset", "verify", "signed-in"]) {
    show(view, view === id);
  }
  const signedIn = id === "signed-in";
  show("logout", signedIn);
  show("whoami", signedIn);
}

/** A TOTP setup's QR code and secret (four characters a group) into the given elements. */
function showTotpSecret(setup, qrId, secretId) {
  $(qrId).src = setup.qr_svg;
  $(secretId).textContent = setup.secret.match(/.{1,4}/g).join(" ");
}

/** The enrollment token and the secret it set up leave the page (done, cancelled or expired). */
function forgetEnrollment() {
  state.enrollment = null;
  $("enroll-qr").removeAttribute("src");
  $("enroll-secret").textContent = "";
}

function showSignedOut() {
  state.challenge = null;
  forgetEnrollment();
  state.link = null;
  showView("signed-out");
  $("login-email").focus();
}

/** The mailed link this page was opened with, if any: its token leaves the address bar (and
 * the history) at once, and the address becomes the page's own. */
function takeLink() {
  const view = location.pathname.split("/").pop();
  if (!LINK_VIEWS.includes(view)) return null;
  const token = new URLSearchParams(location.search).get("token");
  history.replaceState(null, "", "./");
  return token ? {view, token} : null;
}

function showReset() {
  $("reset-new-password").value = "";
  $("reset-code").value = "";
  $("reset-code").required = false;
  show("reset-factor", false);
  show("reset-webauthn-row", false);
  showView("reset");
  $("reset-new-password").focus();
}

function showVerify() {
  showView("verify");
  $("verify-confirm").focus();
}

function showChallenge(answer) {
  state.challenge = answer;
  const methods = answer.methods ?? [];
  show("challenge-totp-form", methods.includes("totp"));
  show("challenge-backup-form", methods.includes("backup_code"));
  show("challenge-webauthn-row", methods.includes("webauthn") && Boolean(answer.webauthn));
  $("challenge-code").value = "";
  $("challenge-backup").value = "";
  showView("challenge");
  $("challenge").querySelector("form:not([hidden]) input, p:not([hidden]) > button")?.focus();
}

/** After the password, when the service requires a second factor the user does not have. */
function showEnrollment(answer) {
  forgetEnrollment();
  state.enrollment = answer.enrollment_token;
  show("enroll-totp-card", false);
  show("enroll-totp");
  $("enroll-code").value = "";
  $("enroll-key-name").value = "";
  showView("enroll");
  $("enroll-totp").focus();
}

/** What a login (or a registration's login) answered: a challenge, an enrollment, or tokens. */
async function afterPassword(answer, message) {
  if (answer.status === "mfa_required") showChallenge(answer);
  else if (answer.status === "mfa_enrollment_required") showEnrollment(answer);
  else await signedIn(message);
}

async function signedIn(message) {
  state.challenge = null;
  forgetEnrollment();
  $("login-password").value = "";
  $("register-password").value = "";
  await loadAccount();
  showView("signed-in");
  notice(message);
  $("mfa-heading").focus();
}

async function loadAccount() {
  const [me, mfa] = await Promise.all([api.me(), api.mfaState()]);
  state.mfa = mfa;
  $("whoami").textContent = `Signed in as ${me.email}`;
  renderEmail(me);
  renderMfa(mfa);
  await Promise.all([loadKeys(), loadSessions(), loadEvents()]);
}

async function refreshMfa() {
  state.mfa = await api.mfaState();
  renderMfa(state.mfa);
}

function renderEmail(me) {
  $("email-state").textContent = me.email_verified
    ? `${me.email}: confirmed.`
    : `${me.email}: not confirmed yet.`;
  show("verify-send", !me.email_verified);
}

function renderMfa(mfa) {
  $("mfa-summary").textContent = mfa.mfa_enabled
    ? "On: logging in needs your password and a second factor."
    : "Off: your password alone logs you in. Add an authenticator app or a security key.";
  $("totp-state").textContent = mfa.totp.enabled
    ? "Status: on."
    : mfa.totp.pending
      ? "Status: setup started, not confirmed yet."
      : "Status: off.";
  show("totp-setup", !mfa.totp.enabled && $("totp-enroll").hidden);
  show("totp-disable-form", mfa.totp.enabled);
  show("backup-regenerate-form", mfa.totp.enabled);
  $("backup-state").textContent = mfa.mfa_enabled
    ? `${mfa.backup_codes.remaining} unused backup codes left.`
    : "You get backup codes when you turn on a second factor.";
}

function showBackupCodes(codes) {
  if (!codes || codes.length === 0) return;
  const list = $("backup-list");
  list.replaceChildren(...codes.map((code) => el("li", {text: code})));
  show("backup-codes");
  $("backup-codes").focus();
}

// --- security keys and passkeys --------------------------------------------------------------

async function loadKeys() {
  const {items} = await api.credentials();
  show("keys-empty", items.length === 0);
  $("key-list").replaceChildren(...items.map(keyItem));
}

function keyItem(key) {
  const kind = key.passkey ? "Passkey" : "Security key";
  const renameId = `rename-${key.id}`;
  const rename = el(
    "form",
    {className: "rename"},
    el("label", {for: renameId, text: `New name for ${key.name}`}),
    el("input", {id: renameId, value: key.name, maxLength: 64, required: true}),
    el("button", {type: "submit", text: "Rename"}),
  );
  rename.addEventListener("submit", (event) => {
    event.preventDefault();
    act(rename, async () => {
      await api.renameCredential(key.id, $(renameId).value.trim());
      await loadKeys();
      notice("Renamed.");
    });
  });
  const remove = el("button", {type: "button", text: `Remove ${key.name}`});
  remove.addEventListener("click", () =>
    act(remove, async () => {
      await withStepUp(() => api.removeCredential(key.id));
      await Promise.all([loadKeys(), refreshMfa(), loadEvents()]);
      notice(`Removed ${key.name}.`);
    }),
  );
  return el(
    "li",
    {},
    el("strong", {text: key.name}),
    el("span", {className: "tag", text: kind}),
    el("p", {className: "meta", text: `Added ${when(key.created_at)}; last used ${when(key.last_used_at)}.`}),
    rename,
    remove,
  );
}

// --- sessions and events ---------------------------------------------------------------------

const AMR = {pwd: "password", otp: "authenticator app", recovery: "backup code",
  hwk: "security key", swk: "synced passkey", mfa: "two-step", device: "remembered device"};

async function loadSessions() {
  const {items} = await api.sessions();
  $("session-list").replaceChildren(...items.map(sessionItem));
}

function sessionItem(session) {
  const where = session.ip ?? "an unknown address";
  const item = el(
    "li",
    {},
    el("strong", {text: `Signed in ${when(session.created_at)} from ${where}`}),
    session.current ? el("span", {className: "tag", text: "This session"}) : null,
    el("p", {className: "meta", text: `Last active ${when(session.last_seen_at)}.`}),
    el("p", {className: "meta", text: `Browser: ${session.user_agent ?? "unknown"}.`}),
    el("p", {className: "meta",
      text: `Verified with: ${session.amr.map((m) => AMR[m] ?? m).join(", ") || "—"}.`}),
  );
  if (!session.current) {
    const end = el("button", {type: "button", text: "End this session",
      "aria-label": `End this session (signed in ${when(session.created_at)} from ${where})`});
    end.addEventListener("click", () =>
      act(end, async () => {
        await api.endSession(session.id);
        await loadSessions();
        notice("Session ended: it is signed out.");
      }),
    );
    item.append(end);
  }
  return item;
}

// SPEC §2's event types in words; any other type is shown as it is.
const EVENTS = {
  "login.succeeded": "Password accepted",
  "login.failed": "Wrong password",
  "challenge.succeeded": "Second factor accepted at login",
  "challenge.failed": "Wrong second factor at login",
  "step_up.succeeded": "Confirmed it was you",
  "step_up.failed": "Failed to confirm it was you",
  reauthenticated: "Confirmed with the password",
  "totp.replay_refused": "A used code was refused",
  "factor.locked": "Second factor locked after too many wrong codes",
  "totp.enabled": "Authenticator app turned on",
  "totp.disabled": "Authenticator app turned off",
  "backup_code.used": "Backup code used",
  "backup_codes.regenerated": "New backup codes made",
  "webauthn.registered": "Security key or passkey added",
  "webauthn.removed": "Security key or passkey removed",
  "webauthn.clone_suspected": "A security key looked cloned and was refused",
  "refresh.reuse_detected": "A stolen session token was detected; the session was ended",
  "password.changed": "Password changed",
  "password.reset": "Password reset with a mailed link",
  "email.verified": "Email address confirmed",
  "login.refused": "A login was refused: the account was disabled",
  "account.disabled": "Account disabled by an administrator",
  "account.enabled": "Account enabled by an administrator",
  "account.mfa_reset": "Second factors removed by an administrator",
  "account.sessions_revoked": "Every session ended by an administrator",
  "account.unlocked": "Locks lifted by an administrator",
  "account.shown": "Account looked up by an administrator",
  logout: "Logged out",
  "session.revoked": "A session was ended",
  "device.remembered": "This device was remembered",
  "device.spent": "A remembered device was forgotten after wrong passwords",
  "devices.forgotten": "Every remembered device was forgotten",
};

async function loadEvents(more = false) {
  const page = await api.events(EVENTS_PAGE, more ? state.eventsCursor : null);
  const rows = page.items.map((event) =>
    el(
      "tr",
      {},
      el("td", {text: when(event.at)}),
      el("td", {}, EVENTS[event.type] ?? event.type, el("br"),
        el("code", {className: "hint", text: event.type})),
      el("td", {text: event.ip}),
      el("td", {text: event.user_agent}),
    ),
  );
  if (more) $("events-body").append(...rows);
  else $("events-body").replaceChildren(...rows);
  state.eventsCursor = page.next_cursor;
  show("events-more", Boolean(page.next_cursor));
}

// --- the handlers ----------------------------------------------------------------------------

function wire() {
  on("login-form", async () => {
    const answer = await api.login($("login-email").value, $("login-password").value);
    $("login-password").value = "";
    await afterPassword(answer, "You are logged in.");
  });

  on("register-form", async () => {
    const email = $("register-email").value;
    const password = $("register-password").value;
    await api.register(email, password);
    const answer = await api.login(email, password);
    $("register-email").value = "";
    $("register-password").value = "";
    await afterPassword(answer, "Your account is ready and you are logged in.");
  });

  on("passkey-login", async () => {
    await api.passkeyLogin();
    await signedIn("You are logged in with your passkey.");
  });

  const answer = async (proof) => {
    try {
      await api.answerChallenge(state.challenge.challenge_token, proof);
    } catch (error) {
      if (error.code === "challenge_expired") showSignedOut();
      throw error;
    }
    await signedIn("You are logged in.");
  };
  on("challenge-totp-form", () => answer({code: $("challenge-code").value}));
  on("challenge-backup-form", () => answer({backup_code: $("challenge-backup").value}));
  on("challenge-webauthn", async () =>
    answer({webauthn: await api.assertForChallenge(state.challenge.webauthn)}),
  );
  on("challenge-cancel", () => showSignedOut());

  on("logout", async () => {
    await api.logout();
    showSignedOut();
    notice("You are logged out.");
  });

  on("totp-setup", async () => {
    const setup = await withStepUp(() => api.totpSetup());
    showTotpSecret(setup, "totp-qr", "totp-secret");
    $("totp-confirm-code").value = "";
    show("totp-enroll");
    show("totp-setup", false);
    $("totp-confirm-code").focus();
  });

  on("totp-confirm-form", async () => {
    const confirmed = await withStepUp(() => api.totpConfirm($("totp-confirm-code").value));
    show("totp-enroll", false);
    $("totp-qr").removeAttribute("src");
    $("totp-secret").textContent = "";
    await Promise.all([refreshMfa(), loadSessions(), loadEvents()]);
    notice("The authenticator app is on.");
    showBackupCodes(confirmed.backup_codes);
  });

  on("totp-disable-form", async () => {
    await api.totpDisable($("totp-disable-password").value, proofFrom($("totp-disable-code").value));
    $("totp-disable-password").value = "";
    $("totp-disable-code").value = "";
    await Promise.all([refreshMfa(), loadEvents()]);
    notice("The authenticator app is off.");
  });

  on("backup-regenerate-form", async () => {
    const {backup_codes: codes} = await api.regenerateBackupCodes($("backup-regenerate-code").value);
    $("backup-regenerate-code").value = "";
    await Promise.all([refreshMfa(), loadEvents()]);
    notice("New backup codes made; the old ones no longer work.");
    showBackupCodes(codes);
  });

  const codesText = () =>
    [...$("backup-list").children].map((item) => item.textContent).join("\n") + "\n";
  on("backup-copy", async () => {
    await navigator.clipboard.writeText(codesText());
    notice("Backup codes copied.");
  });
  on("backup-download", () => {
    const url = URL.createObjectURL(new Blob([codesText()], {type: "text/plain"}));
    const link = el("a", {href: url, download: "mfa-service-backup-codes.txt"});
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10000);
    notice("Backup codes downloaded.");
  });
  on("backup-done", () => {
    $("backup-list").replaceChildren();
    show("backup-codes", false);
    notice("The codes are no longer shown.");
    $("backup-heading").focus();
  });

  on("key-add-form", async () => {
    const name = $("key-name").value.trim();
    const passkey = $("key-kind-passkey").checked;
    const added = await withStepUp(() => api.addCredential(name, passkey));
    $("key-name").value = "";
    await Promise.all([loadKeys(), refreshMfa(), loadSessions(), loadEvents()]);
    notice(`Added ${added.credential.name}.`);
    showBackupCodes(added.backup_codes);
  });

  on("events-more", () => loadEvents(true));
  wireStepUp();
  wireEnrollment();
  wireRecovery();
}

function wireEnrollment() {
  // The enrollment token expires (or a password change ends it): start again from the login.
  const enrolling = async (action) => {
    try {
      return await action();
    } catch (error) {
      if (error.code === "invalid_token") {
        showSignedOut();
        throw new api.ApiError(401, {code: "challenge_expired"}, null);
      }
      throw error;
    }
  };
  on("enroll-totp", async () => {
    const setup = await enrolling(() => api.enrollTotpSetup(state.enrollment));
    showTotpSecret(setup, "enroll-qr", "enroll-secret");
    show("enroll-totp-card");
    show("enroll-totp", false);
    $("enroll-code").focus();
  });
  on("enroll-confirm-form", async () => {
    const code = $("enroll-code").value;
    const answer = await enrolling(() => api.enrollTotpConfirm(state.enrollment, code));
    await signedIn("Two-step verification is on, and you are logged in.");
    showBackupCodes(answer.backup_codes);
  });
  on("enroll-key-form", async () => {
    const name = $("enroll-key-name").value.trim();
    const answer = await enrolling(() => api.enrollSecurityKey(state.enrollment, name));
    await signedIn(`Added ${answer.credential.name}. Two-step verification is on, and you are logged in.`);
    showBackupCodes(answer.backup_codes);
  });
  on("enroll-cancel", () => showSignedOut());
}

function wireRecovery() {
  on("forgot-open", () => {
    const open = $("forgot-form").hidden;
    show("forgot-form", open);
    $("forgot-open").setAttribute("aria-expanded", String(open));
    if (open) {
      $("forgot-email").value = $("login-email").value;
      $("forgot-email").focus();
    }
  });

  on("forgot-form", async () => {
    const {detail} = await api.forgotPassword($("forgot-email").value);
    show("forgot-form", false);
    $("forgot-open").setAttribute("aria-expanded", "false");
    notice(detail);
  });

  // A user with a second factor proves it too: the first try without one tells.
  const reset = async (proof) => {
    const password = $("reset-new-password").value;
    try {
      await api.resetPassword(state.link.token, password, proof);
    } catch (error) {
      if (error.code === "invalid_code" && Object.keys(proof).length === 0) {
        show("reset-factor");
        show("reset-webauthn-row");
        $("reset-code").required = true;
        setTimeout(() => $("reset-code").focus()); // once act() has enabled the form again
        notice("One more step: your second factor.");
        return;
      }
      if (error.code === "invalid_reset_token") await leaveLink();
      throw error;
    }
    api.forgetTokens(); // every session ended, this tab's too
    showSignedOut();
    $("login-password").value = "";
    notice("Your password is changed. Log in with it.");
  };
  on("reset-form", () => {
    const code = $("reset-code").value.trim();
    return reset(code ? proofFrom(code) : {});
  });
  on("reset-webauthn", async () => {
    if (!$("reset-new-password").reportValidity()) return;
    await reset(await api.resetProofWithSecurityKey(state.link.token));
  });
  on("reset-cancel", () => leaveLink());

  on("verify-confirm", async () => {
    try {
      await api.verifyEmail(state.link.token);
    } catch (error) {
      if (error.code === "invalid_verification_token") await leaveLink();
      throw error;
    }
    await leaveLink("Your email address is confirmed.");
  });

  on("verify-send", async () => {
    const {detail} = await api.requestEmailVerification();
    notice(detail);
  });
}

/** Back from a link's view: to the account when this tab is signed in, else to log in. */
async function leaveLink(message = "") {
  state.link = null;
  if (api.hasSession()) {
    await signedIn(message);
    return;
  }
  showSignedOut();
  notice(message);
}

async function start() {
  for (const heading of document.querySelectorAll("h2")) heading.tabIndex = -1;
  wire();
  state.link = takeLink();
  if (state.link?.view === "reset-password") {
    showReset();
    return;
  }
  if (state.link?.view === "verify-email") {
    showVerify();
    return;
  }
  if (!api.hasSession()) {
    showSignedOut();
    return;
  }
  try {
    await signedIn("Welcome back.");
  } catch (error) {
    api.forgetTokens();
    showSignedOut();
    showProblem(asProblem(error));
  }
}

start();
