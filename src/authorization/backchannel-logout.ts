import { setTimeout as sleep } from 'node:timers/promises'
import type { TokenIssuer } from '../tokens/token-issuer.js'
import type { EndedSession } from './sso-session.js'

/** What the notifier reports to the log. */
export interface NotifierLog {
  info(obj: object, msg: string): void
  warn(obj: object, msg: string): void
}

/** One delivery's result (also what tests wait for). */
export interface Delivery {
  clientId: string
  sid: string
  ok: boolean
  attempts: number
  status?: number | undefined
}

/**
 * OIDC Back-Channel Logout 1.0 §2.5–2.8: after a session ended (and committed), a logout token is
 * POSTed to every client of the session that registered a URI — only to that registered URI, with
 * a timeout per attempt, a bounded number of retries (with a short real-time pause between them:
 * a network backoff, not a time decision) and redirects not followed. The logout never waits for
 * it; `idle()` lets shutdown and tests wait for the deliveries in flight.
 */
export class BackchannelLogout {
  private readonly inFlight = new Set<Promise<Delivery>>()
  constructor(
    private readonly issuer: TokenIssuer,
    private readonly opts: { timeoutMs: number; retries: number; retryPauseMs?: number },
    private readonly log: NotifierLog,
  ) {}

  /** Starts the deliveries for ended sessions; returns at once. */
  notify(ended: readonly EndedSession[]): Promise<Delivery[]> {
    const all: Promise<Delivery>[] = []
    for (const s of ended) {
      for (const target of s.backchannel) {
        const p = this.deliver(target.clientId, target.uri, target.alg, s.userId, s.sessionId)
        this.inFlight.add(p)
        void p.finally(() => this.inFlight.delete(p))
        all.push(p)
      }
    }
    return Promise.all(all)
  }

  /** Resolves when every delivery started so far has finished. */
  async idle(): Promise<void> {
    while (this.inFlight.size > 0) await Promise.allSettled([...this.inFlight])
  }

  private async deliver(clientId: string, uri: string, alg: string, subject: string, sid: string): Promise<Delivery> {
    let attempts = 0
    let status: number | undefined
    try {
      const token = await this.issuer.signLogoutToken({ clientId, subject, sessionId: sid }, alg)
      for (;;) {
        attempts++
        try {
          const res = await fetch(uri, {
            method: 'POST',
            headers: { 'content-type': 'application/x-www-form-urlencoded', 'cache-control': 'no-store' },
            body: new URLSearchParams({ logout_token: token }).toString(),
            redirect: 'manual',
            signal: AbortSignal.timeout(this.opts.timeoutMs),
          })
          status = res.status
          await res.body?.cancel().catch(() => undefined)
          // §2.8: 200 (or 204) is success; a redirect is not followed and counts as a failure.
          if (res.status === 200 || res.status === 204) {
            this.log.info({ clientId, sid, attempts }, 'back-channel logout delivered')
            return { clientId, sid, ok: true, attempts, status }
          }
          // 400 means the RP refused the token: retrying will not change its mind.
          if (res.status === 400) break
        } catch {
          status = undefined
        }
        if (attempts > this.opts.retries) break
        await sleep((this.opts.retryPauseMs ?? 250) * attempts)
      }
    } catch (err) {
      this.log.warn({ clientId, sid, err: err instanceof Error ? err.message : 'unknown' }, 'back-channel logout token not signed')
    }
    this.log.warn({ clientId, sid, attempts, status }, 'back-channel logout not delivered')
    return { clientId, sid, ok: false, attempts, status }
  }
}
