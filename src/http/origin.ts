import type { FastifyRequest } from 'fastify'
import type { Client } from '../clients/clients.store.js'
import { OAuthError } from '../errors.js'

/**
 * CSRF guard for cookie-authenticated requests (OWASP CSRF cheat sheet, origin verification):
 * the Origin must be one the client lists; `null` and missing origins are refused.
 */
export function requireAllowedOrigin(req: FastifyRequest, client: Client): void {
  const origin = req.headers.origin
  const site = req.headers['sec-fetch-site']
  if (origin === undefined || origin === 'null') throw new OAuthError('access_denied', 'this request must come from an allowed origin', `origin ${origin ?? 'missing'}; sec-fetch-site ${String(site)}`)
  if (!client.allowedOrigins.includes(origin)) throw new OAuthError('access_denied', 'this request must come from an allowed origin', `origin not allowed: ${origin.slice(0, 200)}`)
}
