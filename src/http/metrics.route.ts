import { createHash, timingSafeEqual } from 'node:crypto'
import type { FastifyInstance } from 'fastify'
import { OAuthError } from '../errors.js'
import type { Services } from '../services.js'
import { bearerToken } from './bearer.js'
import { methodNotAllowed } from './not-allowed.js'
import { BEARER, errorResponses, MediaResponse } from './schemas/common.js'

const sha256 = (s: string) => createHash('sha256').update(s, 'utf8').digest()

/**
 * GET /metrics: Prometheus text exposition. Open, as DESIGN.md lists it, unless METRICS_TOKEN
 * is set: then `Authorization: Bearer <METRICS_TOKEN>` is required (401 otherwise). Labels
 * never carry secrets or user data (ASVS 13.4.5).
 */
export function metricsRoute(app: FastifyInstance, s: Services): void {
  const expected = s.config.metricsToken === undefined ? undefined : sha256(s.config.metricsToken)
  app.get('/metrics', {
    schema: {
      summary: 'Prometheus metrics',
      description: 'Prometheus text exposition. Open unless METRICS_TOKEN is set; then `Authorization: Bearer <METRICS_TOKEN>` is required.',
      tags: ['operations'],
      security: [{}, ...BEARER],
      response: { 200: MediaResponse('text/plain', 'The metrics (`text/plain; version=0.0.4`).'), ...errorResponses(401) },
    },
  }, async (req, reply) => {
    if (expected) {
      // Equal-length digests, compared in constant time: neither length nor prefix leaks.
      if (!timingSafeEqual(sha256(bearerToken(req)), expected)) {
        throw new OAuthError('invalid_token', 'the metrics token is invalid', 'wrong metrics token').withScheme('Bearer')
      }
    }
    const body = await s.metrics.render()
    return reply.header('cache-control', 'no-store').type(s.metrics.contentType).send(body)
  })
  methodNotAllowed(app, '/metrics', ['GET'])
}
