import { hash, randomBytes } from 'node:crypto'

/** Prefix of every refresh token, so secret scanners can recognise leaked ones. */
export const REFRESH_TOKEN_PREFIX = 'tsr_'
const SHAPE = /^tsr_[A-Za-z0-9_-]{43}$/

/** A new opaque refresh token: 256 bits from the CSPRNG, base64url. */
export function newRefreshToken(): string {
  return REFRESH_TOKEN_PREFIX + randomBytes(32).toString('base64url')
}

/** True when `value` could be a token we issued (cheap pre-check before any lookup). */
export function looksLikeRefreshToken(value: string): boolean {
  return SHAPE.test(value)
}

/** What the database stores instead of the token. */
export function hashRefreshToken(token: string): Buffer {
  return hash('sha256', token, 'buffer')
}
