import { collectDefaultMetrics, Counter, Registry } from 'prom-client'
import type { OAuthErrorCode } from './errors.js'
import { GRANT_TYPES, type GrantType } from './grants/grant-types.js'
import { JOB_NAMES, type JobName } from './jobs.js'
import type { ThrottleKind } from './throttle/login-throttle.store.js'

/** How a token response came about: a `/token` grant, or `/login`. */
export type TokenGrant = GrantType | 'login'

/** What happened to a refresh-token family or one of its tokens. */
export type RefreshEvent = 'issued' | 'rotated' | 'retried' | 'reuse_detected' | 'revoked'

/** Why a family was revoked: a closed set, so a label never carries free text. */
export type RevokeReason = 'revoke_endpoint' | 'logout' | 'admin' | 'reuse_detected' | 'user_disabled' | 'client_disabled' | 'password_changed' | 'revoked_by_user'

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

/** prom-client's default buckets (seconds), kept so that dashboards and alerts stay valid. */
const DURATION_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10] as const

interface DurationSeries {
  readonly labels: { method: string; route: string; status_code: string }
  /** Observations per bucket (not cumulative); the last slot is above the largest bound. */
  readonly counts: number[]
  sum: number
  count: number
}

/**
 * `tessera_http_request_duration_seconds`, observed once per request. prom-client's Histogram
 * validates and hashes the labels on every observation, even through a cached child; this one
 * finds the series with one Map lookup and adds to plain numbers. It is a metric of the
 * registry like any other (the registry calls `get()` at scrape time and formats the result), so
 * the exposition is the one prom-client's Histogram would give.
 */
class RequestDurations {
  readonly name = 'tessera_http_request_duration_seconds'
  readonly help = 'HTTP request duration, by method, route pattern (unmatched for unknown paths) and status code'
  readonly type = 'histogram'
  readonly aggregator = 'sum'
  /** By "method route status": bounded, since every part of the key is (METHODS, route patterns, status codes). */
  private readonly series = new Map<string, DurationSeries>()

  observe(method: string, route: string | undefined, statusCode: number, seconds: number): void {
    const key = `${method} ${route} ${statusCode}`
    let s = this.series.get(key)
    if (s === undefined) {
      s = { labels: { method: METHODS.has(method) ? method : 'OTHER', route: route ?? 'unmatched', status_code: String(statusCode) }, counts: new Array<number>(DURATION_BUCKETS.length + 1).fill(0), sum: 0, count: 0 }
      this.series.set(key, s)
    }
    let i = 0
    while (i < DURATION_BUCKETS.length && seconds > DURATION_BUCKETS[i]!) i++
    s.counts[i]!++
    s.sum += seconds
    s.count++
  }

  /** The values in prom-client's histogram layout: cumulative buckets, +Inf, sum, count. */
  get() {
    const values: { labels: Record<string, string | number>; sharedLabels?: Record<string, string>; value: number; metricName: string }[] = []
    // Methods outside METHODS share the OTHER labels: merged here, as prom-client would.
    const merged = new Map<string, DurationSeries>()
    for (const s of this.series.values()) {
      const id = `${s.labels.method} ${s.labels.route} ${s.labels.status_code}`
      const m = merged.get(id)
      if (m === undefined) merged.set(id, { labels: s.labels, counts: [...s.counts], sum: s.sum, count: s.count })
      else {
        s.counts.forEach((c, i) => (m.counts[i]! += c))
        m.sum += s.sum
        m.count += s.count
      }
    }
    for (const s of merged.values()) {
      let acc = 0
      DURATION_BUCKETS.forEach((le, i) => {
        acc += s.counts[i]!
        values.push({ labels: { le }, sharedLabels: s.labels, value: acc, metricName: `${this.name}_bucket` })
      })
      values.push({ labels: { le: '+Inf' }, sharedLabels: s.labels, value: s.count, metricName: `${this.name}_bucket` })
      values.push({ labels: {}, sharedLabels: s.labels, value: s.sum, metricName: `${this.name}_sum` })
      values.push({ labels: {}, sharedLabels: s.labels, value: s.count, metricName: `${this.name}_count` })
    }
    return { name: this.name, help: this.help, type: this.type, values, aggregator: this.aggregator }
  }
}

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
  private readonly requestDurations = new RequestDurations()

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
    this.registry.registerMetric(this.requestDurations as unknown as Parameters<Registry['registerMetric']>[0])
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
    this.requestDurations.observe(method, route, statusCode, elapsedMs / 1000)
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
