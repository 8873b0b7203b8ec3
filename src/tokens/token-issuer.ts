import type { Clock } from '../clock.js'
import type { Keyring } from '../keys/keyring.js'
import { issueAccessToken, issueIdToken, issueLogoutToken, verifyAccessToken, verifyIdTokenHint, type AccessTokenClaims, type IdTokenHint, type IssueInput, type IdTokenInput } from './access-token.js'

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

  /**
   * Throws `temporarily_unavailable` when the access-token line (and line `idTokenAlg`, when the
   * answer will hold an ID token) cannot sign: call it before a write the answer needs them for.
   */
  ensureCanSign(idTokenAlg?: string): void {
    this.keyring.activeSigner()
    if (idTokenAlg !== undefined) this.keyring.activeSigner(idTokenAlg)
  }

  /** The time a token response is issued at: read once, so its tokens share `iat` and `exp`. */
  nowSeconds(): number {
    return this.clock.nowSeconds()
  }

  signAccessToken(input: IssueInput, nowSeconds: number) {
    return issueAccessToken(this.keyring, this.issuer, this.ttlSeconds, nowSeconds, input)
  }

  /** Signs an ID token with line `alg` (the client's `id_token_signed_response_alg`). */
  signIdToken(input: IdTokenInput, nowSeconds: number, alg: string): Promise<string> {
    return issueIdToken(this.keyring, this.issuer, this.ttlSeconds, nowSeconds, alg, input)
  }

  /** Verifies an `id_token_hint` (RP-initiated logout); `invalid_request` otherwise. */
  verifyIdTokenHint(token: string): Promise<IdTokenHint> {
    return verifyIdTokenHint(this.keyring, this.issuer, token, this.clock.nowSeconds())
  }

  /** Signs a back-channel logout token for one client on its ID-token line. */
  signLogoutToken(input: { clientId: string; subject: string; sessionId: string }, alg: string): Promise<string> {
    return issueLogoutToken(this.keyring, this.issuer, this.clock.nowSeconds(), alg, input)
  }

  /** Verifies one of our access tokens (`audience` undefined: any); `invalid_token` otherwise. */
  verifyAccessToken(token: string, audience: string | undefined): Promise<AccessTokenClaims> {
    return verifyAccessToken(this.keyring, this.issuer, audience, token, this.clock.nowSeconds())
  }
}
