import type { FastifyRequest } from 'fastify'
import { OAuthError } from '../errors.js'

/** The bearer token of `Authorization: Bearer …` (RFC 6750 §2.1), or `invalid_token`. */
export function bearerToken(req: FastifyRequest): string {
  const header = req.headers.authorization
  if (header === undefined) throw new OAuthError('invalid_token', 'a bearer token is required', 'no token').withScheme('Bearer')
  // RFC 6750 §2.1: "Bearer" 1*SP b64token
  const m = /^Bearer +([A-Za-z0-9\-._~+/]+=*)$/i.exec(header)
  if (!m) throw new OAuthError('invalid_token', 'the access token is invalid', 'malformed Authorization header').withScheme('Bearer')
  return m[1]!
}
