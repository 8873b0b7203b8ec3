import type { FastifyRequest } from 'fastify'
import type { ClientCache } from '../clients/client-cache.js'
import { secretMatches, type Client } from '../clients/client.js'
import { OAuthError } from '../errors.js'

export type ClientAuthMethod = 'client_secret_basic' | 'client_secret_post' | 'none'

function invalidBasic(detail: string): OAuthError {
  return new OAuthError('invalid_client', 'client authentication failed', detail).withScheme('Basic')
}

// RFC 6749 §2.3.1 / App. B: Basic credentials are form-urlencoded before base64.
function formDecode(s: string): string {
  try {
    return decodeURIComponent(s.replace(/\+/g, '%20'))
  } catch {
    throw invalidBasic('bad percent-encoding in Basic credentials')
  }
}

function parseBasic(header: string): { id: string; secret: string } {
  const m = /^Basic +([A-Za-z0-9+/]+={0,2}) *$/i.exec(header)
  if (!m) throw invalidBasic('malformed Basic header')
  const decoded = Buffer.from(m[1]!, 'base64').toString('utf8')
  const colon = decoded.indexOf(':')
  if (colon < 0) throw invalidBasic('no colon in Basic credentials')
  const id = formDecode(decoded.slice(0, colon))
  const secret = formDecode(decoded.slice(colon + 1))
  if (id === '') throw invalidBasic('empty client id')
  return { id, secret }
}

/**
 * Authenticates the calling client (RFC 6749 §2.3): HTTP Basic or `client_secret` in the
 * body for confidential clients, `client_id` alone for public ones; exactly one method.
 */
export async function authenticateClient(req: FastifyRequest, params: Readonly<Record<string, string>>, clients: ClientCache): Promise<{ client: Client; method: ClientAuthMethod }> {
  const authorization = req.headers.authorization
  // RFC 6749 §3.2: an empty parameter is treated as absent.
  const bodyId = params.client_id || undefined
  const bodySecret = params.client_secret || undefined
  let id: string
  let secret: string | undefined
  let method: ClientAuthMethod
  if (authorization !== undefined && /^basic(\s|$)/i.test(authorization)) {
    ;({ id, secret } = parseBasic(authorization))
    if (bodySecret !== undefined) throw new OAuthError('invalid_request', 'use exactly one client authentication method')
    if (bodyId !== undefined && bodyId !== id) throw new OAuthError('invalid_request', 'client_id does not match the authenticated client')
    method = 'client_secret_basic'
  } else {
    if (bodyId === undefined) throw new OAuthError('invalid_client', 'client authentication failed', 'no client credentials')
    id = bodyId
    secret = bodySecret
    method = secret !== undefined ? 'client_secret_post' : 'none'
  }
  const client = id.length <= 128 && !id.includes('\0') ? await clients.get(id) : undefined
  const fail = (detail: string) => {
    const e = new OAuthError('invalid_client', 'client authentication failed', detail)
    return method === 'client_secret_basic' ? e.withScheme('Basic') : e
  }
  if (method === 'none') {
    if (!client || !client.isPublic || client.disabled) throw fail(client?.isPublic === false ? 'confidential client without a secret' : 'unknown or disabled client')
    return { client, method }
  }
  // Runs the same constant-time comparisons whether or not the client exists; a rotated-out
  // secret counts until its overlap ends (docs/admin-clients.md "Rotating a secret").
  const ok = secretMatches(client, secret ?? '', clients.clock.nowMs())
  if (!client || client.isPublic) throw fail(client ? 'public client sent a secret' : 'unknown client')
  if (!ok) throw fail('wrong secret')
  if (client.disabled) throw fail('disabled client')
  return { client, method }
}
