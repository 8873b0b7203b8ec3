import type { Clock } from '../clock.js'
import type { Keyring } from '../keys/keyring.js'
import { issueAccessToken, issueIdToken, verifyAccessToken, type AccessTokenClaims, type IssueInput, type IdTokenInput } from './access-token.js'

/**
 * Tessera's own JWTs, bound to this instance's keyring, issuer and clock: grants sign with it and
 * Tessera's endpoints verify with it, so no caller passes keys, issuer or time around.
 */
export class TokenIssuer {
  constructor(
    private readonly keyring: Keyring,
    /** The `iss` of every token (exact, no trailing slash). */
    readonly issuer: string,
    /** Lifetime of access and ID tokens. */
    readonly ttlSeconds: number,
    private readonly clock: Clock,
  ) {}

  /** Throws `temporarily_unavailable` when no key can sign: call it before a write the answer needs a signature for. */
  ensureCanSign(): void {
    this.keyring.activeSigner()
  }

  /** The time a token response is issued at: read once, so its tokens share `iat` and `exp`. */
  nowSeconds(): number {
    return this.clock.nowSeconds()
  }

  signAccessToken(input: IssueInput, nowSeconds: number) {
    return issueAccessToken(this.keyring, this.issuer, this.ttlSeconds, nowSeconds, input)
  }

  signIdToken(input: IdTokenInput, nowSeconds: number): Promise<string> {
    return issueIdToken(this.keyring, this.issuer, this.ttlSeconds, nowSeconds, input)
  }

  /** Verifies one of our access tokens (`audience` undefined: any); `invalid_token` otherwise. */
  verifyAccessToken(token: string, audience: string | undefined): Promise<AccessTokenClaims> {
    return verifyAccessToken(this.keyring, this.issuer, audience, token, this.clock.nowSeconds())
  }
}
