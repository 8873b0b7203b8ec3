import type { Clock } from '../clock.js'
import { OAuthError } from '../errors.js'

/** The 429 of a client over its rate at /token. */
export function rateLimitedError(retryAfterSeconds: number): OAuthError {
  return new OAuthError('temporarily_unavailable', 'too many requests from this client; retry later', 'client rate limit').withStatus(429).retryAfter(retryAfterSeconds)
}

/**
 * Per-client request rate at /token (a client_credentials loop must not starve everyone else):
 * a token bucket per client on this instance, refilled at the client's rate per second and
 * holding two seconds' worth. In memory on purpose: it guards this instance's CPU, which is what
 * a flood uses up, and costs no database round trip (docs/security.md "Brute force and abuse").
 */
export class ClientRateLimit {
  private readonly buckets = new Map<string, { tokens: number; atMs: number }>()

  constructor(
    /** For clients without a rate of their own; 0 = no limit. */
    readonly defaultPerSecond: number,
    private readonly clock: Clock,
  ) {}

  /** Takes one request for `clientId` (`perSecond`: its own rate, null = the default), or throws the 429. */
  take(clientId: string, perSecond: number | null): void {
    const rate = perSecond ?? this.defaultPerSecond
    if (rate === 0) return
    const now = this.clock.nowMs()
    const capacity = 2 * rate
    let bucket = this.buckets.get(clientId)
    if (!bucket) {
      bucket = { tokens: capacity, atMs: now }
      this.buckets.set(clientId, bucket)
    } else {
      bucket.tokens = Math.min(capacity, bucket.tokens + (Math.max(0, now - bucket.atMs) * rate) / 1000)
      bucket.atMs = now
    }
    if (bucket.tokens < 1) throw rateLimitedError((1 - bucket.tokens) / rate)
    bucket.tokens -= 1
  }
}
