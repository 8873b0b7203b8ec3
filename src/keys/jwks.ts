import { createHash } from 'node:crypto'
import type { JWK } from 'jose'

/** The JWKS document, serialised once per key-set change, with its strong ETag. */
export interface JwksDocument {
  readonly body: string
  readonly etag: string
}

const PUBLIC_MEMBERS = ['kty', 'crv', 'x', 'y', 'n', 'e', 'kid', 'alg', 'use'] as const

/** The public members of a JWK, and nothing else (RFC 7517: never a private member). */
function publicMembers(jwk: JWK): JWK {
  const out: Record<string, unknown> = {}
  for (const m of PUBLIC_MEMBERS) if (jwk[m] !== undefined) out[m] = jwk[m]
  return out as JWK
}

/** Serialises the published keys (pending, active, retired) as a JWKS with a strong ETag of the body. */
export function jwksDocument(keys: readonly JWK[]): JwksDocument {
  const body = JSON.stringify({ keys: keys.map(publicMembers) })
  return { body, etag: `"${createHash('sha256').update(body).digest('base64url')}"` }
}
