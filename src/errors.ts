/** RFC 6749 §5.2, RFC 6750 §3 and RFC 7009 error codes, plus our transport-level ones. */
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
  | 'not_found'
  | 'method_not_allowed'
  | 'payload_too_large'
  | 'unsupported_media_type'
  | 'temporarily_unavailable'
  | 'server_error'

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
  not_found: 404,
  method_not_allowed: 405,
  payload_too_large: 413,
  unsupported_media_type: 415,
  temporarily_unavailable: 503,
  server_error: 500,
}

/** The one error type of Tessera: `description` is safe to show, `detail` is for logs only. */
export class OAuthError extends Error {
  /** Set when the caller authenticated with HTTP Basic or Bearer, for `WWW-Authenticate`. */
  authScheme: 'Basic' | 'Bearer' | undefined
  constructor(
    readonly code: OAuthErrorCode,
    readonly description: string,
    readonly detail?: string,
  ) {
    super(`${code}: ${description}`)
    this.name = 'OAuthError'
  }
  get status(): number {
    return STATUS[this.code]
  }
  withScheme(scheme: 'Basic' | 'Bearer'): this {
    this.authScheme = scheme
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

/** True when `err` says the database is down, unreachable, overloaded or read-only. */
export function isDatabaseUnavailable(err: unknown): boolean {
  if (!(err instanceof Error)) return false
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
