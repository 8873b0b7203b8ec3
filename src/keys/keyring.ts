import type { FastifyBaseLogger } from 'fastify'
import { importJWK, type CryptoKey, type JWK, type JWSHeaderParameters, type KeyObject } from 'jose'
import type { Clock } from '../clock.js'
import type { Executor, KeyState } from '../db/schema.js'
import { OAuthError } from '../errors.js'
import { jwksDocument, type JwksDocument } from './jwks.js'
import type { KekSet } from './kek.js'
import { openPrivateJwk } from './key-material.js'
import { keySetVersion, loadLiveKeys } from './keys.store.js'
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

export interface KeyringOptions {
  readonly policy: KeyPolicy
  readonly clock: Clock
  readonly log?: Pick<FastifyBaseLogger, 'error'> | undefined
}

/**
 * An instance's in-memory view of the published signing keys: a signer per line, the verification keys
 * by kid (algorithm pinned), the serialised JWKS and the schedule's next dates. It is loaded from
 * the database by `reload()`; the key-sync job (key-sync.ts) decides when.
 */
export class Keyring {
  private byKid = new Map<string, VerificationKey>()
  /** The signer of each line (algorithm) whose active key this instance can open. */
  private signers = new Map<string, Signer>()
  /** Lines with an active key (whether or not this instance can open it). */
  private activeLines: string[] = []
  private jwks: JwksDocument = jwksDocument([])
  private fingerprint = ''
  private nextChange = Infinity
  private nextStep = Infinity
  private loading: Promise<void> | undefined
  /** The load that starts when the running one ends (shared by everyone who asked meanwhile). */
  private queued: Promise<void> | undefined
  private loadedVersion = ''
  private lastLoadMs = 0

  constructor(
    private readonly db: Executor,
    /** The KEKs this instance opens private keys with (the current one seals new keys). */
    readonly keks: KekSet,
    private readonly opts: KeyringOptions,
  ) {}

  get policy(): KeyPolicy {
    return this.opts.policy
  }

  /** The key-set version (keys.store `keySetVersion`) the last load read. */
  get version(): string {
    return this.loadedVersion
  }

  /** When the last load started (clock ms). */
  get loadedAtMs(): number {
    return this.lastLoadMs
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

  private async load(): Promise<void> {
    this.lastLoadMs = this.opts.clock.nowMs()
    const version = await keySetVersion(this.db)
    const rows = await loadLiveKeys(this.db)
    const policy = this.opts.policy
    this.nextChange = nextKeySetChange(rows, policy)
    this.nextStep = nextScheduleStep(rows, policy)
    this.loadedVersion = version
    const fingerprint = rows.map((r) => `${r.kid}:${r.state}:${r.activate_at?.getTime() ?? ''}`).join(',')
    if (fingerprint === this.fingerprint) return
    const byKid = new Map<string, VerificationKey>()
    const signers = new Map<string, Signer>()
    for (const row of rows) {
      const publicJwk = row.public_jwk as unknown as JWK
      byKid.set(row.kid, { alg: row.alg, state: row.state, key: (await importJWK(publicJwk, row.alg)) as Key, activateAt: activationTime(row, policy) })
      if (row.state === 'active') {
        try {
          signers.set(row.alg, { kid: row.kid, alg: row.alg, key: (await importJWK(openPrivateJwk(this.keks, row), row.alg)) as Key })
        } catch {
          // Wrong KEK or tampered ciphertext: this key cannot sign; say so without any key material.
          this.opts.log?.error({ kid: row.kid, kekId: row.kek_id }, 'cannot decrypt the active signing key (wrong KEY_ENCRYPTION_KEY or tampered row)')
        }
      }
    }
    // JWKS: RFC 7517, public members only; pending, active and retired keys.
    this.jwks = jwksDocument(rows.map((r) => r.public_jwk as unknown as JWK))
    this.byKid = byKid
    this.signers = signers
    this.activeLines = rows.filter((r) => r.state === 'active').map((r) => r.alg)
    this.fingerprint = fingerprint
  }

  /** Whether the key schedule has a step due now (by the keys this instance holds). */
  scheduleDue(): boolean {
    return this.nextStep <= this.opts.clock.nowMs()
  }

  /**
   * The active key of line `alg` (default: the access-token line); `temporarily_unavailable` when
   * it cannot sign (no active key on that line, or a KEK that does not open it).
   */
  activeSigner(alg: string = this.opts.policy.alg): Signer {
    const signer = this.signers.get(alg)
    if (!signer) throw new OAuthError('temporarily_unavailable', 'the service is temporarily unavailable, retry later', `no usable signing key on the ${alg} line`)
    return signer
  }

  /** Whether every configured line (the access-token line and RS256) has a key this instance can sign with. */
  canSign(): boolean {
    return this.opts.policy.lines.every((alg) => this.signers.has(alg))
  }

  /** The configured lines this instance cannot sign with (for start-up and readiness messages). */
  unusableLines(): string[] {
    return this.opts.policy.lines.filter((alg) => !this.signers.has(alg))
  }

  jwksDocument(): JwksDocument {
    return this.jwks
  }

  /**
   * `Cache-Control: max-age` for the JWKS now: the configured ceiling, shortened so that no
   * cache outlives the next scheduled change of the key set (minus the skew allowance).
   */
  jwksMaxAge(): number {
    return jwksMaxAge(this.nextChange, this.opts.clock.nowMs(), this.opts.policy)
  }

  /** The algorithms that have an active key (discovery's `id_token_signing_alg_values_supported`). */
  algorithms(): string[] {
    return [...new Set(this.activeLines)].sort()
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
    const now = this.opts.clock.nowMs()
    const signsNot = (e: VerificationKey | undefined) => e !== undefined && e.state === 'pending' && e.activateAt > now
    let entry = this.byKid.get(kid)
    // An unknown kid, or a pending one, may be a key activated by another instance moments ago:
    // reload, at most once a second.
    if ((!entry || signsNot(entry)) && now - this.lastLoadMs > 1000) {
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
