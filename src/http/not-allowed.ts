import type { FastifyInstance } from 'fastify'
import { OAuthError } from '../errors.js'
import { sendError } from './error-handler.js'

/** Answers other methods on `url` with 405 and an `Allow` header (RFC 9110 §15.5.6). */
export function methodNotAllowed(app: FastifyInstance, url: string, allowed: string[]): void {
  const others = ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE'].filter((m) => !allowed.includes(m) && !(m === 'HEAD' && allowed.includes('GET')))
  app.route({
    method: others as ('GET' | 'POST')[],
    url,
    handler: (_req, reply) => sendError(reply.header('allow', allowed.join(', ')), new OAuthError('method_not_allowed', `use ${allowed.join(' or ')}`)),
  })
}
