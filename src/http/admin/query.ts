import type { FastifyRequest } from 'fastify'
import { OAuthError } from '../../errors.js'

/**
 * The query parameters of an admin request, strings only: a parameter sent twice is an
 * error, an empty one counts as absent, unknown ones are ignored.
 */
export function adminQuery<K extends string>(req: FastifyRequest, known: readonly K[]): Partial<Record<K, string>> {
  const raw = (req.query ?? {}) as Record<string, unknown>
  const out: Partial<Record<K, string>> = {}
  for (const name of known) {
    const value = raw[name]
    if (Array.isArray(value)) throw new OAuthError('invalid_request', `parameter sent more than once: ${name}`)
    if (typeof value === 'string' && value !== '') out[name] = value
  }
  return out
}
