import type { AuditEvent } from '../audit/audit.store.js'
import type { Clock } from '../clock.js'
import type { LoginThrottlePolicy } from '../config.js'
import type { Db } from '../db/schema.js'
import { OAuthError } from '../errors.js'
import type { Metrics } from '../metrics.js'
import { normalizeUsername } from '../users/user.js'
import { addressKey } from './address.js'
import { loginAttempt, settleAttempt, type ThrottleKey, type ThrottleRow } from './login-throttle.store.js'

/** The one answer to a throttled password check: the same whoever the account is, whatever the password. */
export function throttledError(retryAfterSeconds: number): OAuthError {
  return new OAuthError('temporarily_unavailable', 'too many failed attempts; retry later', 'login throttled').withStatus(429).retryAfter(retryAfterSeconds)
}

/** The counters of one password check: its account, its address, and both. */
export function throttleKeys(username: string, ip: string | undefined): { account: ThrottleKey; address: ThrottleKey; pair: ThrottleKey } {
  // NUL cannot be stored in text; such a username cannot exist, but is throttled all the same.
  const account = normalizeUsername(username).replace(/\0/g, '\uFFFD')
  const address = addressKey(ip)
  return {
    account: { kind: 'account', subject: account },
    address: { kind: 'address', subject: address },
    pair: { kind: 'address_account', subject: `${address}|${account}` },
  }
}

/** A password check under way: counted as a failure until it is settled otherwise. */
export interface Attempt {
  readonly keys: ReturnType<typeof throttleKeys>
  /** The counters this attempt locked (kept only if it fails). */
  readonly locked: readonly ThrottleRow[]
}

/**
 * Brute-force throttling of password checks (docs/security.md "Brute force and abuse"), on counters in
 * PostgreSQL so that every instance enforces the same limits. `begin` runs before any hash: a
 * locked key refuses the attempt (429); otherwise the attempt counts as a failure at once, so that
 * concurrent guesses on several instances cannot all pass before the first one fails.
 */
export class LoginThrottle {
  constructor(
    private readonly db: Db,
    readonly policy: LoginThrottlePolicy,
    private readonly clock: Clock,
    private readonly metrics: Metrics,
  ) {}

  /** Counts the attempt, or throws the 429 of a locked key (nothing counted, no hash computed). */
  async begin(username: string, ip: string | undefined): Promise<Attempt> {
    const keys = throttleKeys(username, ip)
    const now = this.clock.nowMs()
    const { refused, rows } = await loginAttempt(this.db, [keys.account, keys.address, keys.pair], now, this.policy)
    if (refused) {
      const blocking = rows.filter((r) => r.blockedUntil && r.blockedUntil.getTime() > now).sort((a, b) => b.blockedUntil!.getTime() - a.blockedUntil!.getTime())
      const longest = blocking[0]
      this.metrics.loginThrottled(longest?.kind ?? 'account')
      throw throttledError(((longest?.blockedUntil?.getTime() ?? now + 1000) - now) / 1000)
    }
    // A key whose count went past its free failures was locked by this attempt.
    return { keys, locked: rows.filter((r) => r.blockedUntil !== null) }
  }

  /** The attempt failed: its counts and locks stand. The audit events of its locks, for the failure's transaction. */
  lockEvents(attempt: Attempt, event: Pick<AuditEvent, 'clientId' | 'userId' | 'ip' | 'userAgent'>): AuditEvent[] {
    const now = this.clock.nowMs()
    return attempt.locked.map((r) => ({
      type: 'login.locked' as const,
      ...event,
      detail: {
        kind: r.kind,
        ...(r.kind !== 'address' ? { username: attempt.keys.account.subject } : {}),
        ...(r.kind !== 'account' ? { address: attempt.keys.address.subject } : {}),
        failures: r.failures,
        seconds: Math.ceil((r.blockedUntil!.getTime() - now) / 1000),
        until: r.blockedUntil!.toISOString(),
      },
    }))
  }

  /** Counts the locks of a failed attempt, once its audit events committed. */
  countLocks(attempt: Attempt): void {
    for (const r of attempt.locked) this.metrics.loginLocked(r.kind)
  }

  /** The password was right: the account's counters start again; the address keeps its other failures. */
  succeeded(attempt: Attempt): Promise<void> {
    return settleAttempt(this.db, [attempt.keys.account, attempt.keys.pair], [attempt.keys.address], this.policy)
  }

  /** No password was checked after all (shed load, database trouble): the attempt's count is taken back. */
  cancel(attempt: Attempt): Promise<void> {
    return settleAttempt(this.db, [], [attempt.keys.account, attempt.keys.address, attempt.keys.pair], this.policy)
  }
}
