import { createHash, timingSafeEqual } from 'node:crypto'

/** RFC 7636 §4.2: an S256 challenge is the base64url SHA-256 of the verifier (43 characters). */
export const CODE_CHALLENGE = /^[A-Za-z0-9_-]{43}$/
/** RFC 7636 §4.1: code_verifier = 43*128unreserved. */
export const CODE_VERIFIER = /^[A-Za-z0-9\-._~]{43,128}$/

/** The S256 challenge of a verifier. */
export function s256(verifier: string): string {
  return createHash('sha256').update(verifier, 'ascii').digest('base64url')
}

/** RFC 7636 §4.6: whether `verifier` is well formed and hashes to `challenge` (constant time). */
export function verifierMatches(verifier: string | undefined, challenge: string): boolean {
  if (verifier === undefined || !CODE_VERIFIER.test(verifier)) return false
  const a = Buffer.from(s256(verifier))
  const b = Buffer.from(challenge)
  return a.length === b.length && timingSafeEqual(a, b)
}
