import type { FastifyInstance, HTTPMethods } from 'fastify'
import { OAuthError } from '../errors.js'
import { sendError } from './error-handler.js'

/**
 * Answers every other method fastify knows on `url` with 405 and an `Allow` header (RFC 9110
 * §15.5.6). The body is RFC 6749 §5.2 `invalid_request`: there is no OAuth code for a wrong method.
 * A method `url` already has a route for (the JWKS preflight) keeps it; CORS preflights from an
 * allowed origin are answered before routing (cors.ts), so any other OPTIONS is a 405 too.
 */
export function methodNotAllowed(app: FastifyInstance, url: string, allowed: HTTPMethods[]): void {
  const others = app.supportedMethods.filter(
    (m) => !allowed.includes(m as HTTPMethods) && !(m === 'HEAD' && allowed.includes('GET')) && !app.hasRoute({ method: m as HTTPMethods, url }),
  ) as HTTPMethods[]
  const allow = allowed.join(', ')
  const description = `method not allowed: use ${allowed.join(' or ')}`
  app.route({
    method: others,
    url,
    // Not an endpoint: left out of /openapi.json, whose description says how other methods answer.
    config: { methodNotAllowed: true },
    handler: (_req, reply) => sendError(reply.header('allow', allow), new OAuthError('invalid_request', description).withStatus(405)),
  })
}
