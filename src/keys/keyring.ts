import { createHash } from 'node:crypto'
import type { FastifyBaseLogger } from 'fastify'
import { importJWK, type CryptoKey, type JWK, type JWSHeaderParameters, type KeyObject } from 'jose'
import type { Db, KeyState } from '../db/schema.js'
import { OAuthError } from '../errors.js'
import { kekSet, type Kek, type KekSet } from './kek.js'
import { changed, keySetVersion, loadLiveKeys, openPrivateJwk, runKeySchedule } from './keys.store.js'
import { activationTime, jwksMaxAge, nextKeySetChange, nextScheduleStep, type KeyPolicy } from './policy.js'

type Key = CryptoKey | KeyObject

interface VerificationKey {
  readonly alg: string
  readonly state: KeyState
  readonly key: Key
  /** pending keys: when they start signing (ms). */
  readonly activateAt: number
}

/** The key the server signs with. */
export interface Signer {
  readonly kid: string
  readonly alg: string
  readonly key: Key
}

/** The JWKS document, serialised once per key-set change. */
export interface JwksDocument {
  readonly body: string
  readonly etag: string
}

export interface KeyringOptions {
  readonly policy: KeyPolicy
  /** A full reload at least this often, whatever the change poll says. */
  readonly refreshSeconds: number
  /** The injected clock (ms) for every schedule decision. */
  readonly now?: () => number
  readonly log?: Pick<FastifyBaseLogger, 'info' | 'warn' | 'error'>
  /** How often the change poll and the schedule check run (ms); 1000 by default. */
  readonly tickMs?: number
  /** Whether this instance runs the schedule (default true; every instance may, safely). */
  readonly schedule?: boolean
}

type Log = NonNullable<KeyringOptions['log']>

/**
 * Every instance's view of the signing keys. A one-row query every `tickMs` notices any change
 * made by any instance or command (each change bumps a version sequence) and reloads; a full
 * reload also runs every `refreshSeconds`, and (rate-limited) when a token names an unknown kid.
 * The same tick runs the key schedule when something is due: activation, removal, publication.
 */
export class Keyring {
  private byKid = new Map<string, VerificationKey>()
  private signer: Signer | undefined
  private jwks: JwksDocument = { body: '{"keys":[]}', etag: '' }
  private fingerprint = ''
  private version = ''
  private nextChange = Infinity
  private nextStep = Infinity
  private lastLoad = 0
  private loading: Promise<void> | undefined
  /** The load that starts when the running one ends (shared by everyone who asked meanwhile). */
  private queued: Promise<void> | undefined
  private ticking: Promise<void> | undefined
  private timer: NodeJS.Timeout | undefined
  private failing = false
  private blocked: string | undefined
  /** The KEKs this instance opens private keys with (the current one seals new keys). */
  readonly keks: KekSet
  private readonly now: () => number
  private readonly log: Log | undefined

  constructor(
    private readonly db: Db,
    keks: Kek | KekSet,
    private readonly opts: KeyringOptions,
  ) {
    this.keks = 'current' in keks ? keks : kekSet(keks)
    this.now = opts.now ?? Date.now
    this.log = opts.log
  }

  get policy(): KeyPolicy {
    return this.opts.policy
  }

  /** Loads the keys now (running a due schedule step first), then keeps them fresh in the background. */
  async start(): Promise<void> {
    await this.reload()
    await this.tick()
    // The timer skips a beat while a tick still runs (a slow database): no queue builds up.
    this.timer = setInterval(() => {
      if (!this.ticking) void this.tick()
    }, this.opts.tickMs ?? 1000)
    this.timer.unref()
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer)
    this.timer = undefined
  }

  /**
   * Re-reads the key set, and resolves only after a load that STARTED after this call has
   * finished: a load already running may have read the rows before the caller's change committed
   * (say, the revoke this instance just answered), so it is not reused. Loads run one at a time;
   * callers that arrive while one runs share the next one.
   */
  reload(): Promise<void> {
    if (!this.loading) return this.startLoad()
    this.queued ??= this.loading
      .catch(() => undefined)
      .then(() => {
        this.queued = undefined
        return this.startLoad()
      })
    return this.queued
  }

  private startLoad(): Promise<void> {
    const run: Promise<void> = this.load().finally(() => {
      if (this.loading === run) this.loading = undefined
    })
    this.loading = run
    return run
  }

  /**
   * Polls for changes and runs the schedule when something is due; never throws (a database
   * outage keeps the keys we have, and is logged once). Runs one at a time: a call made while
   * another runs waits for it, then looks again at the clock as it is then.
   */
  tick(): Promise<void> {
    const run: Promise<void> = (this.ticking ?? Promise.resolve()).then(() => this.runTick())
    this.ticking = run
    void run.finally(() => {
      if (this.ticking === run) this.ticking = undefined
    })
    return run
  }

  private async runTick(): Promise<void> {
    try {
      const version = await keySetVersion(this.db)
      if (version !== this.version || Date.now() - this.lastLoad >= this.opts.refreshSeconds * 1000) await this.reload()
      if (this.opts.schedule !== false && this.nextStep <= this.now()) {
        const result = await runKeySchedule(this.db, this.keks, { now: this.now(), policy: this.opts.policy })
        if (result.blocked !== undefined && result.blocked !== this.blocked) {
          this.log?.error({ kid: result.blocked }, 'cannot decrypt the pending signing key that is due to activate (wrong KEY_ENCRYPTION_KEY?); the active key keeps signing')
        }
        this.blocked = result.blocked
        if (changed(result)) {
          this.log?.info({ activated: result.activated, retired: result.retired, removed: result.removed, published: result.published }, 'signing key schedule step')
          await this.reload()
        }
      }
      if (this.failing) this.log?.info('signing keys: the database answers again')
      this.failing = false
    } catch (err) {
      if (!this.failing) this.log?.warn({ err: { message: (err as Error).message } }, 'signing key refresh failed; keeping the keys we have')
      this.failing = true
    }
  }

  private async load(): Promise<void> {
    // Wall-clock time for throttling reloads (a load matter); schedule decisions use `this.now`.
    this.lastLoad = Date.now()
    const version = await keySetVersion(this.db)
    const rows = await loadLiveKeys(this.db)
    const policy = this.opts.policy
    this.nextChange = nextKeySetChange(rows, policy)
    this.nextStep = nextScheduleStep(rows, policy)
    this.version = version
    const fingerprint = rows.map((r) => `${r.kid}:${r.state}:${r.activate_at?.getTime() ?? ''}`).join(',')
    if (fingerprint === this.fingerprint && this.signer) return
    const byKid = new Map<string, VerificationKey>()
    let signer: Signer | undefined
    for (const row of rows) {
      const publicJwk = row.public_jwk as unknown as JWK
      byKid.set(row.kid, { alg: row.alg, state: row.state, key: (await importJWK(publicJwk, row.alg)) as Key, activateAt: activationTime(row, policy) })
      if (row.state === 'active') {
        try {
          signer = { kid: row.kid, alg: row.alg, key: (await importJWK(openPrivateJwk(this.keks, row), row.alg)) as Key }
        } catch {
          // Wrong KEK or tampered ciphertext: this key cannot sign; say so without any key material.
          this.log?.error({ kid: row.kid, kekId: row.kek_id }, 'cannot decrypt the active signing key (wrong KEY_ENCRYPTION_KEY or tampered row)')
        }
      }
    }
    // JWKS: RFC 7517, public members only; pending, active and retired keys.
    const keys = rows.map((r) => publicMembers(r.public_jwk as unknown as JWK))
    const body = JSON.stringify({ keys })
    this.jwks = { body, etag: `"${createHash('sha256').update(body).digest('base64url')}"` }
    this.byKid = byKid
    this.signer = signer
    this.fingerprint = fingerprint
  }

  /** The active key; `temporarily_unavailable` when none can sign (misconfigured KEK). */
  activeSigner(): Signer {
    if (!this.signer) throw new OAuthError('temporarily_unavailable', 'the service is temporarily unavailable, retry later', 'no usable signing key')
    return this.signer
  }

  canSign(): boolean {
    return this.signer !== undefined
  }

  jwksDocument(): JwksDocument {
    return this.jwks
  }

  /**
   * `Cache-Control: max-age` for the JWKS now: the configured ceiling, shortened so that no
   * cache outlives the next scheduled change of the key set (minus the skew allowance).
   */
  jwksMaxAge(): number {
    return jwksMaxAge(this.nextChange, this.now(), this.opts.policy)
  }

  /** Algorithms of the published keys, for discovery. */
  algorithms(): string[] {
    return [...new Set([...this.byKid.values()].map((k) => k.alg))]
  }

  /**
   * Key lookup for `jwtVerify`: exact map lookup by a string kid, and the header's alg
   * must be the key's one algorithm (RFC 8725 §3.1). Keys never come from the token.
   * Revoked and removed keys are not in the map. A pending key verifies only from its
   * activation time on (another instance may have activated it a moment ago).
   */
  readonly verificationKey = async (header: JWSHeaderParameters): Promise<Key> => {
    const kid = header.kid
    if (typeof kid !== 'string' || kid.length === 0 || kid.length > 128) throw new KeyLookupError('missing or malformed kid')
    const signsNot = (e: VerificationKey | undefined) => e !== undefined && e.state === 'pending' && e.activateAt > this.now()
    let entry = this.byKid.get(kid)
    // An unknown kid, or a pending one, may be a key activated by another instance moments ago:
    // reload, at most once a second.
    if ((!entry || signsNot(entry)) && Date.now() - this.lastLoad > 1000) {
      await this.reload().catch(() => undefined)
      entry = this.byKid.get(kid)
    }
    if (!entry) throw new KeyLookupError('unknown kid')
    // A pending key never signs here before its time, so a token that names one is forged.
    if (signsNot(entry)) throw new KeyLookupError('kid of a key that does not sign yet')
    if (header.alg !== entry.alg) throw new KeyLookupError('alg does not match the key')
    return entry.key
  }
}

/** Raised by the key lookup; verification turns it into `invalid_token`. */
export class KeyLookupError extends Error {}

const PUBLIC_MEMBERS = ['kty', 'crv', 'x', 'y', 'n', 'e', 'kid', 'alg', 'use'] as const
function publicMembers(jwk: JWK): JWK {
  const out: Record<string, unknown> = {}
  for (const m of PUBLIC_MEMBERS) if (jwk[m] !== undefined) out[m] = jwk[m]
  return out as JWK
}
