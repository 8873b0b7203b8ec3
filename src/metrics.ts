import { collectDefaultMetrics, Counter, Histogram, Registry } from 'prom-client'
import type { OAuthErrorCode } from './errors.js'
import { GRANT_TYPES, type GrantType } from './grants/grant-types.js'
import { JOB_NAMES, type JobName } from './jobs.js'
import type { ThrottleKind } from './throttle/login-throttle.store.js'

/** How a token response came about: a `/token` grant, or `/login`. */
export type TokenGrant = GrantType | 'login'

/** What happened to a refresh-token family or one of its tokens. */
export type RefreshEvent = 'issued' | 'rotated' | 'retried' | 'reuse_detected' | 'revoked'

/** Why a family was revoked: a closed set, so a label never carries free text. */
export type RevokeReason = 'revoke_endpoint' | 'logout' | 'admin' | 'reuse_detected' | 'user_disabled' | 'client_disabled'

/** Tables the housekeeping job deletes from. */
export type HousekeepingTable =
  | 'refresh_token_family'
  | 'refresh_token'
  | 'revoked_access_token'
  | 'audit_event'
  | 'login_throttle'
  | 'authorization_request'
  | 'authorization_code'
  | 'sso_session'
  | 'idempotency_key'

const GRANTS: readonly TokenGrant[] = [...GRANT_TYPES, 'login']
const EVENTS: readonly Exclude<RefreshEvent, 'revoked'>[] = ['issued', 'rotated', 'retried', 'reuse_detected']
const TABLES: readonly HousekeepingTable[] = ['refresh_token_family', 'refresh_token', 'revoked_access_token', 'audit_event', 'login_throttle', 'authorization_request', 'authorization_code', 'sso_session', 'idempotency_key']
const THROTTLE_KINDS: readonly ThrottleKind[] = ['account', 'address', 'address_account']
// Anything else (WebDAV verbs and the like from scanners) is one series, not one per verb.
const METHODS = new Set(['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS'])

// Process metrics describe the process, not an app: collected once per process into their own
// registry and merged into every scrape, so several apps in one process share one collector.
let processRegistry: Registry | undefined
function processMetrics(): Registry {
  if (!processRegistry) {
    processRegistry = new Registry()
    collectDefaultMetrics({ register: processRegistry })
  }
  return processRegistry
}

type Observer = { observe(value: number): void }

/**
 * Tessera's Prometheus metrics, on a registry of their own (never the global one). Labels are
 * closed sets (grant, error code, event, route pattern…): never a token, user, client or URL.
 */
export class Metrics {
  /** This app's counters and histogram (process metrics are added at render time). */
  readonly registry = new Registry()
  private readonly tokensIssued: Counter<'grant'>
  private readonly oauthErrors: Counter<'code'>
  private readonly refreshEvents: Counter<'event' | 'reason'>
  private readonly housekeepingDeleted: Counter<'table'>
  /** One counter per background job, `tessera_<job>_runs_total{outcome}`. */
  private readonly jobRuns = new Map<JobName, Counter<'outcome'>>()
  private readonly keysRevoked: Counter
  private readonly loginLocks: Counter<'kind'>
  private readonly loginThrottles: Counter<'kind'>
  private readonly passwordChecksShed: Counter
  private readonly clientRateLimits: Counter
  private readonly requestDuration: Histogram<'method' | 'route' | 'status_code'>
  // The histogram's children by "method route status": one Map lookup per request instead of
  // prom-client's label hashing. Bounded, since every part of the key is.
  private readonly durations = new Map<string, Observer>()

  constructor() {
    const registers = [this.registry]
    this.tokensIssued = new Counter({ name: 'tessera_tokens_issued_total', help: 'Token responses sent, by grant (login = POST /login)', labelNames: ['grant'], registers })
    this.oauthErrors = new Counter({ name: 'tessera_oauth_errors_total', help: 'OAuth error responses sent, by error code', labelNames: ['code'], registers })
    this.refreshEvents = new Counter({
      name: 'tessera_refresh_token_events_total',
      help: 'Refresh-token events: issued (new family), rotated, retried (grace window), reuse_detected, revoked (by reason)',
      labelNames: ['event', 'reason'],
      registers,
    })
    this.housekeepingDeleted = new Counter({ name: 'tessera_housekeeping_deleted_rows_total', help: 'Rows deleted by housekeeping, by table', labelNames: ['table'], registers })
    this.keysRevoked = new Counter({ name: 'tessera_signing_keys_revoked_total', help: 'Signing keys revoked through the admin API of this instance (emergency revokes)', registers })
    this.loginLocks = new Counter({ name: 'tessera_login_locks_total', help: 'Password-check locks started (a failure past the free ones), by counter kind: account, address, address_account', labelNames: ['kind'], registers })
    this.loginThrottles = new Counter({ name: 'tessera_login_throttled_total', help: 'Password checks refused with 429 before any hash, by the kind of the counter that was locked', labelNames: ['kind'], registers })
    this.passwordChecksShed = new Counter({ name: 'tessera_password_checks_shed_total', help: 'Password checks refused with 503 because the argon2id queue was full', registers })
    this.clientRateLimits = new Counter({ name: 'tessera_client_rate_limited_total', help: '/token requests refused with 429 because their client was over its rate on this instance', registers })
    for (const kind of THROTTLE_KINDS) {
      this.loginLocks.inc({ kind }, 0)
      this.loginThrottles.inc({ kind }, 0)
    }
    for (const job of JOB_NAMES) {
      const counter = new Counter({ name: `tessera_${job}_runs_total`, help: `Runs of the ${job} background job of this instance, by outcome (ok, error)`, labelNames: ['outcome'], registers })
      for (const outcome of ['ok', 'error']) counter.inc({ outcome }, 0)
      this.jobRuns.set(job, counter)
    }
    this.requestDuration = new Histogram({
      name: 'tessera_http_request_duration_seconds',
      help: 'HTTP request duration, by method, route pattern (unmatched for unknown paths) and status code',
      labelNames: ['method', 'route', 'status_code'],
      registers,
    })
    // Known series start at 0, so rate() and absent() work from the first scrape.
    for (const grant of GRANTS) this.tokensIssued.inc({ grant }, 0)
    for (const event of EVENTS) this.refreshEvents.inc({ event, reason: '' }, 0)
    for (const table of TABLES) this.housekeepingDeleted.inc({ table }, 0)
  }

  /** A signing key was revoked (emergency) through this instance. */
  keyRevoked(): void {
    this.keysRevoked.inc()
  }

  /** A password-check counter was locked (after the failure's audit event committed). */
  loginLocked(kind: ThrottleKind): void {
    this.loginLocks.inc({ kind })
  }

  /** A password check was refused (429) because a counter was locked. */
  loginThrottled(kind: ThrottleKind): void {
    this.loginThrottles.inc({ kind })
  }

  /** A password check was refused (503) because the hashing queue was full. */
  passwordCheckShed(): void {
    this.passwordChecksShed.inc()
  }

  /** A /token request was refused (429): its client was over its rate. */
  clientRateLimited(): void {
    this.clientRateLimits.inc()
  }

  /** A token response was sent. */
  tokenIssued(grant: TokenGrant): void {
    this.tokensIssued.inc({ grant })
  }

  /** An OAuth error response was sent (counted where errors become HTTP: `sendError`). */
  oauthError(code: OAuthErrorCode): void {
    this.oauthErrors.inc({ code })
  }

  /**
   * A refresh-token event, after its transaction committed. `reason` goes with `revoked` only.
   * Reuse revokes the family: count `reuse_detected` and `revoked` with reason `reuse_detected`.
   * `families` is for a revocation of several at once (logout everywhere).
   */
  refreshEvent(event: Exclude<RefreshEvent, 'revoked'>): void
  refreshEvent(event: 'revoked', reason: RevokeReason, families?: number): void
  refreshEvent(event: RefreshEvent, reason?: RevokeReason, families = 1): void {
    if (families > 0) this.refreshEvents.inc({ event, reason: event === 'revoked' ? reason : '' }, families)
  }

  /** Rows a housekeeping batch deleted. */
  housekeepingDeletedRows(table: HousekeepingTable, rows: number): void {
    if (rows > 0) this.housekeepingDeleted.inc({ table }, rows)
  }

  /** A run of a background job ended. */
  jobRun(job: JobName, outcome: 'ok' | 'error'): void {
    this.jobRuns.get(job)?.inc({ outcome })
  }

  /** One request: `route` is the matched route pattern, undefined when nothing matched. */
  observeRequest(method: string, route: string | undefined, statusCode: number, elapsedMs: number): void {
    const key = `${method} ${route} ${statusCode}`
    let child = this.durations.get(key)
    if (!child) {
      child = this.requestDuration.labels({ method: METHODS.has(method) ? method : 'OTHER', route: route ?? 'unmatched', status_code: String(statusCode) })
      this.durations.set(key, child)
    }
    child.observe(elapsedMs / 1000)
  }

  /** The Prometheus text exposition content type. */
  get contentType(): string {
    return this.registry.contentType
  }

  /** All metrics, process metrics included, in the text exposition format. */
  render(): Promise<string> {
    return Registry.merge([processMetrics(), this.registry]).metrics()
  }
}
