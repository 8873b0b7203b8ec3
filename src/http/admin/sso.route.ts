import type { FastifyInstance, FastifyRequest } from 'fastify'
import type { AuditContext } from '../../audit/context.js'
import { listConsents } from '../../authorization/authorization.store.js'
import { revokeConsents } from '../../authorization/consents.js'
import { endSsoSessions } from '../../authorization/sso-session.js'
import { listSsoSessions, ssoSessionUser } from '../../authorization/sso-sessions.store.js'
import { OAuthError } from '../../errors.js'
import type { Services } from '../../services.js'
import { parseClientId, parseUserRef, parseUuid } from '../../sessions/params.js'
import { findUserRef } from '../../sessions/sessions.store.js'
import { methodNotAllowed } from '../not-allowed.js'
import { requestContext } from '../params.js'
import { requireAdmin } from './guard.js'
import { adminQuery } from './query.js'
import { BEARER, errorResponses, UserParams } from '../schemas/common.js'
import { ConsentsPage, ConsentsQuery, SsoParams, SsoSessionsPage } from '../schemas/admin.js'
import { Type } from '@sinclair/typebox'

async function userOf(s: Services, value: string) {
  const user = await findUserRef(s.db, parseUserRef(value))
  if (!user) throw new OAuthError('invalid_request', 'no such user').withStatus(404)
  return user
}

const adminContext = (req: FastifyRequest, clientId: string): AuditContext => ({ ...requestContext(req), actor: { via: 'admin_api', clientId } })

/**
 * The admin API of the authorization-code flow: a user's SSO sessions (listed, ended one by one
 * or all at once, with back-channel logout) and remembered consents (listed, revoked).
 */
export function adminSsoRoute(app: FastifyInstance, s: Services): void {
  app.get<{ Params: { user: string } }>('/admin/users/:user/sso-sessions', {
    schema: {
      summary: 'List a user’s SSO sessions',
      tags: ['admin'],
      security: BEARER,
      documentOnly: { params: UserParams, querystring: Type.Object({ include: Type.Optional(Type.Literal('all', { description: '`all` lists ended and expired sessions too.' })) }) },
      response: { 200: SsoSessionsPage, ...errorResponses(400, 401, 403, 404, 503) },
    },
  }, async (req, reply) => {
    await requireAdmin(s, req)
    const q = adminQuery(req, ['include'])
    if (q.include !== undefined && q.include !== 'all') throw new OAuthError('invalid_request', 'include must be all')
    const user = await userOf(s, req.params.user)
    const sessions = await listSsoSessions(s.db, user.id, q.include === 'all')
    return reply.header('cache-control', 'no-store').send({ user, sso_sessions: sessions })
  })
  app.delete<{ Params: { user: string } }>('/admin/users/:user/sso-sessions', {
    schema: {
      summary: 'End all of a user’s SSO sessions',
      description: 'Sends back-channel logout to the clients of each session. Audited.',
      tags: ['admin'],
      security: BEARER,
      documentOnly: { params: UserParams },
      response: { 200: Type.Object({ ended: Type.Integer() }), ...errorResponses(400, 401, 403, 404, 503) },
    },
  }, async (req, reply) => {
    const admin = await requireAdmin(s, req)
    const user = await userOf(s, req.params.user)
    const ended = await endSsoSessions(s.db, { userId: user.id }, 'admin', adminContext(req, admin.client_id))
    void s.backchannel.notify(ended)
    return reply.header('cache-control', 'no-store').send({ ended: ended.length })
  })
  methodNotAllowed(app, '/admin/users/:user/sso-sessions', ['GET', 'DELETE'])

  app.delete<{ Params: { id: string } }>('/admin/sso-sessions/:id', {
    schema: {
      summary: 'End one SSO session',
      tags: ['admin'],
      security: BEARER,
      documentOnly: { params: SsoParams },
      response: { 200: Type.Object({ ended: Type.Boolean() }), ...errorResponses(400, 401, 403, 404, 503) },
    },
  }, async (req, reply) => {
    const admin = await requireAdmin(s, req)
    const id = parseUuid(req.params.id, 'the SSO session id')
    if (!(await ssoSessionUser(s.db, id))) throw new OAuthError('invalid_request', 'no such SSO session').withStatus(404)
    const ended = await endSsoSessions(s.db, { id }, 'admin', adminContext(req, admin.client_id))
    void s.backchannel.notify(ended)
    return reply.header('cache-control', 'no-store').send({ ended: ended.length === 1 })
  })
  methodNotAllowed(app, '/admin/sso-sessions/:id', ['DELETE'])

  app.get<{ Params: { user: string } }>('/admin/users/:user/consents', {
    schema: {
      summary: 'List a user’s remembered consents',
      tags: ['admin'],
      security: BEARER,
      documentOnly: { params: UserParams },
      response: { 200: ConsentsPage, ...errorResponses(400, 401, 403, 404, 503) },
    },
  }, async (req, reply) => {
    await requireAdmin(s, req)
    const user = await userOf(s, req.params.user)
    return reply.header('cache-control', 'no-store').send({ user, consents: await listConsents(s.db, user.id) })
  })
  app.delete<{ Params: { user: string } }>('/admin/users/:user/consents', {
    schema: {
      summary: 'Revoke a user’s consents',
      description: 'All of them, or one client’s (`client`). Audited.',
      tags: ['admin'],
      security: BEARER,
      documentOnly: { params: UserParams, querystring: ConsentsQuery },
      response: { 200: Type.Object({ revoked: Type.Integer() }), ...errorResponses(400, 401, 403, 404, 503) },
    },
  }, async (req, reply) => {
    const admin = await requireAdmin(s, req)
    const q = adminQuery(req, ['client'])
    const user = await userOf(s, req.params.user)
    const revoked = await revokeConsents(s.db, user.id, q.client === undefined ? undefined : parseClientId(q.client), adminContext(req, admin.client_id))
    return reply.header('cache-control', 'no-store').send({ revoked })
  })
  methodNotAllowed(app, '/admin/users/:user/consents', ['GET', 'DELETE'])
}
