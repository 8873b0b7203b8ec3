import { OAuthError } from '../errors.js'

/**
 * The scope of the self-service account API (`/account*`, docs/account.md): a user's token needs
 * it there, so a token minted for a resource server cannot change the password. A client may
 * request it when its allowed scopes list it; its tokens then name Tessera in `aud` too.
 */
export const ACCOUNT_SCOPE = 'tessera:account'

// RFC 6749 §3.3: scope-token = 1*( %x21 / %x23-5B / %x5D-7E )
const SCOPE_TOKEN = /^[\x21\x23-\x5B\x5D-\x7E]+$/

/** Parses a space-delimited scope parameter; undefined when absent or empty (RFC 6749 §3.2). */
export function parseScope(raw: string | undefined): string[] | undefined {
  if (raw === undefined || raw === '') return undefined
  const tokens = raw.split(' ').filter((s) => s !== '')
  if (tokens.length === 0) return undefined
  for (const t of tokens) {
    if (!SCOPE_TOKEN.test(t) || t.length > 128) throw new OAuthError('invalid_scope', 'the scope parameter is malformed')
  }
  if (tokens.length > 64) throw new OAuthError('invalid_scope', 'too many scopes')
  return [...new Set(tokens)]
}

/** The granted scope: the request (or, when absent, everything allowed), never beyond `allowed`. */
export function grantScope(requested: string[] | undefined, allowed: readonly string[]): string[] {
  if (requested === undefined) return [...allowed]
  const outside = requested.filter((s) => !allowed.includes(s))
  if (outside.length > 0) throw new OAuthError('invalid_scope', `scope not allowed: ${outside.join(' ')}`)
  return requested
}
