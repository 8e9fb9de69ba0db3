// What a single-page app writes against the types openapi-typescript generates from the
// service's /openapi.json. tests/typescript/test_generated_client.py generates ./schema.d.ts
// beside this file and runs `tsc --noEmit`: an error body typed `unknown`, a login answer that
// does not narrow on `status`, an error `code` that is a bare string, a field or header the
// document does not name — each is a compile error here. Nothing here is ever run.
import type { components, paths } from "./schema";

// Type-level assertions.
type Equal<A, B> = (<T>() => T extends A ? 1 : 2) extends <T>() => T extends B ? 1 : 2 ? true : false;
type Expect<T extends true> = T;
/** False for `unknown` and `any`: what a generated type must never be where a client reads it. */
type Known<T> = unknown extends T ? false : true;
/** True for a union of string literals, false for `string` (a client cannot switch on that). */
type LiteralUnion<T> = [T] extends [never] ? false : string extends T ? false : true;

type Problem = components["schemas"]["Problem"];
const PROBLEM = "application/problem+json";
type ProblemMedia = typeof PROBLEM;

export class ApiError<B extends Problem = Problem> extends Error {
  constructor(
    readonly status: number,
    readonly body: B,
  ) {
    super(`${body.code}: ${body.detail}`);
  }
}

function unreachable(value: never): never {
  throw new Error(`unexpected answer ${JSON.stringify(value)}`);
}

async function send(path: keyof paths, method: string, body?: unknown, token?: string): Promise<Response> {
  const headers: Record<string, string> = { Accept: `application/json, ${PROBLEM}` };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (token !== undefined) headers["Authorization"] = `Bearer ${token}`;
  return fetch(path, { method, headers, ...(body === undefined ? {} : { body: JSON.stringify(body) }) });
}

// POST /auth/login: the answer is a union narrowed on `status`.
type Login = paths["/auth/login"]["post"];
export type LoginRequest = Login["requestBody"]["content"]["application/json"];
export type LoginAnswer = Login["responses"][200]["content"]["application/json"];
export type LoginProblem = Login["responses"][401 | 422 | 429 | 503]["content"][ProblemMedia];

export type LoginOutcome =
  | { kind: "signed-in"; accessToken: string; refreshToken: string; expiresIn: number }
  | { kind: "second-factor"; challengeToken: string; methods: readonly string[]; securityKey: boolean }
  | { kind: "enroll"; enrollmentToken: string; expiresIn: number }
  | { kind: "refused"; code: LoginProblem["code"]; message: string; retryAfter: number | null };

export function loginMessage(problem: LoginProblem): string {
  switch (problem.code) {
    case "invalid_credentials":
      return "Wrong email or password.";
    case "rate_limited":
      return "Too many attempts; try again later.";
    case "validation_error":
      // Narrowed to the validation problem: its field errors are typed.
      return problem.errors.map((e) => `${e.loc.join(".")}: ${e.msg}`).join("\n");
    default:
      return problem.detail;
  }
}

// The device token of this device's last login: kept by the app, sent with the next login.
let deviceToken: string | undefined;

export async function login(email: string, password: string): Promise<LoginOutcome> {
  const request: LoginRequest = deviceToken === undefined ? { email, password } : { email, password, device_token: deviceToken };
  const r = await send("/auth/login", "POST", request);
  if (r.ok) {
    const answer = (await r.json()) as LoginAnswer;
    switch (answer.status) {
      case "authenticated":
        deviceToken = answer.device_token;
        return {
          kind: "signed-in",
          accessToken: answer.access_token,
          refreshToken: answer.refresh_token,
          expiresIn: answer.expires_in,
        };
      case "mfa_required":
        return {
          kind: "second-factor",
          challengeToken: answer.challenge_token,
          methods: answer.methods,
          securityKey: answer.webauthn != null,
        };
      case "mfa_enrollment_required":
        return { kind: "enroll", enrollmentToken: answer.enrollment_token, expiresIn: answer.expires_in };
      default:
        return unreachable(answer);
    }
  }
  const problem = (await r.json()) as LoginProblem;
  const header = r.headers.get("Retry-After");
  const retryAfter: Login["responses"][429]["headers"]["Retry-After"] | null = header === null ? null : Number(header);
  return { kind: "refused", code: problem.code, message: loginMessage(problem), retryAfter };
}

// POST /mfa/challenge: the second factor, a TOTP code or a backup code.
type Challenge = paths["/mfa/challenge"]["post"];
export type ChallengeAnswer = NonNullable<Challenge["requestBody"]>["content"]["application/json"];
export type ChallengeTokens = Challenge["responses"][200]["content"]["application/json"];
export type ChallengeProblem = Challenge["responses"][401 | 422 | 429]["content"][ProblemMedia];

export async function answerChallenge(
  challengeToken: string,
  factor: { code: string } | { backupCode: string },
  rememberDevice?: boolean,
): Promise<ChallengeTokens> {
  const remember_device = rememberDevice ?? false;
  const answer: ChallengeAnswer =
    "code" in factor
      ? { challenge_token: challengeToken, code: factor.code, remember_device }
      : { challenge_token: challengeToken, backup_code: factor.backupCode, remember_device };
  const r = await send("/mfa/challenge", "POST", answer);
  if (r.ok) {
    const tokens = (await r.json()) as ChallengeTokens;
    deviceToken = tokens.device_token;
    return tokens;
  }
  throw new ApiError(r.status, (await r.json()) as ChallengeProblem);
}

export function challengeNeedsNewLogin(error: ApiError<ChallengeProblem>): boolean {
  return error.body.code === "challenge_expired";
}

// GET /users/me with the access token.
type Me = paths["/users/me"]["get"];
export type CurrentUser = Me["responses"][200]["content"]["application/json"];

export async function currentUser(accessToken: string): Promise<CurrentUser | null> {
  const r = await send("/users/me", "GET", undefined, accessToken);
  if (r.status === 401) {
    const problem = (await r.json()) as Me["responses"][401]["content"][ProblemMedia];
    if (problem.status !== 401) throw new Error("a 401 answers status 401");
    return null;
  }
  if (!r.ok) throw new ApiError(r.status, (await r.json()) as Problem);
  return (await r.json()) as CurrentUser;
}

// A resource server's view: discovery, then the signing key by `kid`.
export type Discovery =
  paths["/.well-known/openid-configuration"]["get"]["responses"][200]["content"]["application/json"];
export type Jwks = paths["/.well-known/jwks.json"]["get"]["responses"][200]["content"]["application/json"];
export type Jwk = Jwks["keys"][number];

export async function signingKey(issuer: string, kid: string): Promise<Jwk | undefined> {
  const discovery = (await (await fetch(`${issuer}/.well-known/openid-configuration`)).json()) as Discovery;
  if (discovery.issuer !== issuer) throw new Error("issuer mismatch");
  const jwks = (await (await fetch(discovery.jwks_uri)).json()) as Jwks;
  return jwks.keys.find((key) => key.kid === kid && key.use === "sig");
}

// What the compiler proves about the document beyond the code above.
export type DocumentChecks = [
  Expect<Known<LoginProblem>>,
  Expect<Known<ChallengeProblem>>,
  Expect<Known<Discovery>>,
  Expect<Known<Jwk>>,
  // Error codes are enums a client can switch on exhaustively, not bare strings.
  Expect<LiteralUnion<LoginProblem["code"]>>,
  Expect<LiteralUnion<ChallengeProblem["code"]>>,
  Expect<Equal<Extract<LoginProblem["code"], "invalid_credentials">, "invalid_credentials">>,
  // The login answer is discriminated on `status`.
  Expect<Equal<LoginAnswer["status"], "authenticated" | "mfa_required" | "mfa_enrollment_required">>,
  // The 422 is the problem+json the service sends, with its field errors.
  Expect<Known<Login["responses"][422]["content"][ProblemMedia]["errors"][number]["loc"]>>,
];
