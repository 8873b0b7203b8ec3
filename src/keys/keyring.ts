import { createHash } from 'node:crypto'
import type { FastifyBaseLogger } from 'fastify'
import { importJWK, type CryptoKey, type JWK, type JWSHeaderParameters, type KeyObject } from 'jose'
import type { Db, KeyState } from '../db/schema.js'
import { OAuthError } from '../errors.js'
import { open, type Kek } from './kek.js'
import { loadLiveKeys } from './keys.store.js'

type Key = CryptoKey | KeyObject

interface VerificationKey {
  readonly alg: string
  readonly state: KeyState
  readonly key: Key
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

/**
 * Every instance's view of the signing keys, reloaded from the database every
 * `refreshSeconds` (and, rate-limited, when a token names an unknown kid), so a
 * rotation or revocation on any instance reaches all of them within that bound.
 */
export class Keyring {
  private byKid = new Map<string, VerificationKey>()
  private signer: Signer | undefined
  private jwks: JwksDocument = { body: '{"keys":[]}', etag: '' }
  private fingerprint = ''
  private lastLoad = 0
  private loading: Promise<void> | undefined
  private timer: NodeJS.Timeout | undefined

  constructor(
    private readonly db: Db,
    private readonly kek: Kek,
    private readonly refreshSeconds: number,
    private readonly log?: Pick<FastifyBaseLogger, 'warn' | 'error'>,
  ) {}

  /** Loads the keys now, then keeps them fresh in the background. */
  async start(): Promise<void> {
    await this.reload()
    this.timer = setInterval(() => {
      this.reload().catch((err: Error) => this.log?.warn({ err: { message: err.message } }, 'signing key reload failed; keeping the keys we have'))
    }, this.refreshSeconds * 1000)
    this.timer.unref()
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer)
  }

  /** Re-reads the key set; concurrent callers share one load. */
  reload(): Promise<void> {
    this.loading ??= this.load().finally(() => { this.loading = undefined })
    return this.loading
  }

  private async load(): Promise<void> {
    this.lastLoad = Date.now()
    const rows = await loadLiveKeys(this.db)
    const fingerprint = rows.map((r) => `${r.kid}:${r.state}`).join(',')
    if (fingerprint === this.fingerprint && this.signer) return
    const byKid = new Map<string, VerificationKey>()
    let signer: Signer | undefined
    for (const row of rows) {
      const publicJwk = row.public_jwk as unknown as JWK
      byKid.set(row.kid, { alg: row.alg, state: row.state, key: await importJWK(publicJwk, row.alg) as Key })
      if (row.state === 'active') {
        try {
          const privateJwk = JSON.parse(open(this.kek, Buffer.from(row.private_key_enc), row.kid).toString('utf8')) as JWK
          signer = { kid: row.kid, alg: row.alg, key: await importJWK(privateJwk, row.alg) as Key }
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

  /** Algorithms of the published keys, for discovery. */
  algorithms(): string[] {
    return [...new Set([...this.byKid.values()].map((k) => k.alg))]
  }

  /**
   * Key lookup for `jwtVerify`: exact map lookup by a string kid, and the header's alg
   * must be the key's one algorithm (RFC 8725 §3.1). Keys never come from the token.
   */
  readonly verificationKey = async (header: JWSHeaderParameters): Promise<Key> => {
    const kid = header.kid
    if (typeof kid !== 'string' || kid.length === 0 || kid.length > 128) throw new KeyLookupError('missing or malformed kid')
    let entry = this.byKid.get(kid)
    // An unknown kid may be a key made by another instance moments ago: reload, at most once a second.
    if (!entry && Date.now() - this.lastLoad > 1000) {
      await this.reload().catch(() => undefined)
      entry = this.byKid.get(kid)
    }
    if (!entry) throw new KeyLookupError('unknown kid')
    // A pending key never signs here, so a token that names one is forged.
    if (entry.state === 'pending') throw new KeyLookupError('kid of a key that does not sign yet')
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
