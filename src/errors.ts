/**
 * The error codes Tessera sends, and only those: a closed set of registered OAuth codes, so no
 * private code can reach a body. RFC 6749 §5.2 (token endpoint; also used by RFC 7009 §2.2.1 and
 * RFC 7662 §2.3), RFC 6749 §4.1.2.1 (`access_denied`, `temporarily_unavailable`, `server_error`) and
 * RFC 6750 §3.1 (bearer). RFC 7009's `unsupported_token_type` is not here: Tessera revokes every kind
 * of token it issues, and anything else is answered 200 (§2.2), so it has no use for it.
 */
export type OAuthErrorCode =
  | 'invalid_request'
  | 'invalid_client'
  | 'invalid_grant'
  | 'unauthorized_client'
  | 'unsupported_grant_type'
  | 'invalid_scope'
  | 'invalid_token'
  | 'insufficient_scope'
  | 'access_denied'
  | 'temporarily_unavailable'
  | 'server_error'
  // Authorization endpoint: RFC 6749 §4.1.2.1, OIDC Core §3.1.2.6, RFC 9126 §2.3.
  | 'unsupported_response_type'
  | 'login_required'
  | 'consent_required'
  | 'interaction_required'
  | 'invalid_request_uri'

const STATUS: Record<OAuthErrorCode, number> = {
  invalid_request: 400,
  invalid_client: 401,
  invalid_grant: 400,
  unauthorized_client: 400,
  unsupported_grant_type: 400,
  invalid_scope: 400,
  invalid_token: 401,
  insufficient_scope: 403,
  access_denied: 403,
  temporarily_unavailable: 503,
  server_error: 500,
  unsupported_response_type: 400,
  login_required: 400,
  consent_required: 400,
  interaction_required: 400,
  invalid_request_uri: 400,
}

/**
 * HTTP-level refusals that have no OAuth code of their own: no such resource, wrong method, body
 * or URL too large (their body says `invalid_request`), the admin API's conflict (409), stale or
 * missing `If-Match` (412, 428) and `Idempotency-Key` reused for another request (422), all with
 * `invalid_request`, and too many requests (429, RFC 6585 §4: a
 * throttled password check or a client over its rate; the body says `temporarily_unavailable`).
 * Only the status tells them apart from the code's own.
 */
export type TransportStatus = 404 | 405 | 409 | 412 | 413 | 414 | 422 | 428 | 429

/** The one error type of Tessera: `description` is safe to show, `detail` is for logs only. */
export class OAuthError extends Error {
  /** Set when the caller authenticated with HTTP Basic or Bearer, for `WWW-Authenticate`. */
  authScheme: 'Basic' | 'Bearer' | undefined
  /** `Retry-After` of a 429 or 503 answer, in whole seconds (5 unless set). */
  retryAfterSeconds: number | undefined
  private transportStatus: TransportStatus | undefined
  constructor(
    readonly code: OAuthErrorCode,
    readonly description: string,
    readonly detail?: string,
  ) {
    super(`${code}: ${description}`)
    this.name = 'OAuthError'
  }
  get status(): number {
    return this.transportStatus ?? STATUS[this.code]
  }
  withScheme(scheme: 'Basic' | 'Bearer'): this {
    this.authScheme = scheme
    return this
  }
  /** Answers with an HTTP-level status (404, 405, 409, 412, 413, 414, 422, 428, 429) instead of the code's own. */
  withStatus(status: TransportStatus): this {
    this.transportStatus = status
    return this
  }
  /** Sets `Retry-After` (429 and 503 answers). */
  retryAfter(seconds: number): this {
    this.retryAfterSeconds = Math.max(1, Math.ceil(seconds))
    return this
  }
}

/**
 * Bad input from a caller, with a message that is safe to show (no secret, no key material).
 * The HTTP error handler answers it `400 invalid_request`; the CLI exits 2 with it. Parsers and
 * validators shared by the admin API and the CLI throw it, so neither translates by hand.
 */
export class InputError extends Error {
  constructor(message: string) {
    super(message)
    this.name = 'InputError'
  }
}

// SQLSTATE classes and codes that mean "the database cannot serve us right now".
const UNAVAILABLE_SQLSTATES = new Set([
  '57P01', // admin_shutdown
  '57P02', // crash_shutdown
  '57P03', // cannot_connect_now
  '57014', // query_canceled (statement_timeout)
  '55P03', // lock_not_available (lock_timeout)
  '40001', // serialization_failure
  '40P01', // deadlock_detected
  '53300', // too_many_connections
  '53100', // disk_full
  '53200', // out_of_memory
  '25006', // read_only_sql_transaction
  '58000', '58030', // system / io errors
])
const UNAVAILABLE_NODE_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EPIPE', 'ENOTFOUND', 'EHOSTUNREACH', 'EAI_AGAIN'])

/**
 * The SQLSTATE or Node.js code of a database error (a wrapped one's cause's), for logs and
 * `/readyz`: a code only, never a message (which may name a host, a user or a value).
 */
export function databaseErrorCode(err: unknown): string | undefined {
  if (!(err instanceof Error)) return undefined
  const code = (err as { code?: unknown }).code
  if (typeof code === 'string' && /^[A-Z0-9_]{1,32}$/.test(code)) return code
  return err.cause !== undefined && err.cause !== err ? databaseErrorCode(err.cause) : undefined
}

/** True when `err` says the database is down, unreachable, overloaded or read-only. */
export function isDatabaseUnavailable(err: unknown): boolean {
  if (!(err instanceof Error)) return false
  // A wrapped error (a failed migration) is judged by what caused it.
  if (err.cause !== undefined && err.cause !== err && isDatabaseUnavailable(err.cause)) return true
  const code = (err as { code?: unknown }).code
  if (typeof code === 'string') {
    if (UNAVAILABLE_SQLSTATES.has(code) || code.startsWith('08') || UNAVAILABLE_NODE_CODES.has(code)) return true
  }
  const msg = err.message
  return (
    msg.includes('Connection terminated') ||
    msg.includes('Query read timeout') ||
    msg.includes('timeout exceeded when trying to connect') ||
    msg.includes('Client has encountered a connection error') ||
    msg.includes('database is closed') ||
    msg.includes('Cannot use a pool after calling end')
  )
}
