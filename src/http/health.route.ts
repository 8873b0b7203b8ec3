import type { FastifyInstance } from 'fastify'
import { sql } from 'kysely'
import type { Services } from '../services.js'

/** Liveness (the process answers) and readiness (the database answers, keys are loaded). */
export function healthRoute(app: FastifyInstance, s: Services, state: { draining: boolean }): void {
  app.get('/healthz', async (_req, reply) => reply.header('cache-control', 'no-store').send({ status: 'ok' }))
  app.get('/readyz', async (_req, reply) => {
    reply.header('cache-control', 'no-store')
    if (state.draining) return reply.code(503).send({ status: 'draining' })
    try {
      await sql`select 1`.execute(s.db)
      s.keyring.activeSigner()
    } catch {
      return reply.code(503).header('retry-after', '5').send({ status: 'unavailable', reason: 'database or signing key not available' })
    }
    return reply.send({ status: 'ready' })
  })
}
