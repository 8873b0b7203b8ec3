import type { FastifyInstance } from 'fastify'
import { sql } from 'kysely'
import type { Services } from '../services.js'
import type { Readiness } from './readiness.js'
import { Type } from '@sinclair/typebox'

const Status = (statuses: string[], description: string) =>
  Type.Object({ status: Type.Union(statuses.map((x) => Type.Literal(x))), reason: Type.Optional(Type.String({ description: 'What start-up waits for, or what is missing.' })) }, { description })

/**
 * Liveness (the process answers) and readiness (start-up is done, the database answers, keys are
 * loaded). Both answer from the first moment the instance listens.
 */
export function healthRoute(app: FastifyInstance, s: Services, state: Readiness): void {
  app.get('/healthz', {
    schema: { summary: 'Liveness probe', description: 'The process answers; from the first moment it listens.', tags: ['operations'], response: { 200: Status(['ok'], 'Alive.') } },
  }, async (_req, reply) => reply.header('cache-control', 'no-store').send({ status: 'ok' }))
  app.get('/readyz', {
    schema: {
      summary: 'Readiness probe',
      description: 'Ready when start-up is done, the database answers and the keys are loaded; 503 with `Retry-After` while starting, draining or unavailable.',
      tags: ['operations'],
      response: { 200: Status(['ready'], 'Ready to serve.'), 503: Status(['starting', 'draining', 'unavailable'], 'Not ready (with `Retry-After`, except while draining).') },
    },
  }, async (_req, reply) => {
    reply.header('cache-control', 'no-store')
    if (state.draining) return reply.code(503).send({ status: 'draining' })
    // Start-up waits for the database, its schema and the keys; the reason holds no secret.
    if (!state.ready) return reply.code(503).header('retry-after', '5').send({ status: 'starting', reason: state.reason })
    try {
      await sql`select 1`.execute(s.db)
      if (!s.keyring.canSign()) throw new Error('a key line cannot sign')
    } catch {
      return reply.code(503).header('retry-after', '5').send({ status: 'unavailable', reason: 'database or signing key not available' })
    }
    return reply.send({ status: 'ready' })
  })
}
