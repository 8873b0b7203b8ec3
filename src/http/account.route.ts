import { Type, type Static } from '@sinclair/typebox'
import type { FastifyInstance, FastifySchema } from 'fastify'
import { findAccount } from '../account/account.store.js'
import { changePassword } from '../account/change-password.js'
import { accountSessions, revokeAccountSession } from '../account/sessions.js'
import { OAuthError } from '../errors.js'
import type { Services } from '../services.js'
import { parseLimit, parseSessionCursor } from '../sessions/params.js'
import { SESSIONS_MAX_LIMIT } from '../sessions/sessions.store.js'
import { accountCaller, accountGuard } from './account-guard.js'
import { methodNotAllowed } from './not-allowed.js'
import { requestContext } from './params.js'
import { errorResponses } from './schemas/common.js'

const Nullable = <T extends ReturnType<typeof Type.String>>(t: T) => Type.Union([t, Type.Null()])
const DateTime = Type.String({ format: 'date-time' })

const Profile = Type.Object(
  {
    id: Type.String({ description: 'The user id (a UUID).' }),
    username: Type.String({ description: 'The username, as stored (normalised).' }),
    name: Nullable(Type.String({ description: 'Full name (OIDC `name`), or null.' })),
    email: Nullable(Type.String({ description: 'E-mail address, or null.' })),
    email_verified: Type.Boolean(),
    roles: Type.Array(Type.String(), { description: 'Roles, as carried in access tokens.' }),
    created_at: DateTime,
  },
  { additionalProperties: false, description: 'The caller\'s own account.' },
)

const PasswordBody = Type.Object(
  {
    current_password: Type.String({ minLength: 1, maxLength: 4096, description: 'The password the user has now.' }),
    new_password: Type.String({ minLength: 1, maxLength: 4096, description: 'The new password: at least 8 characters, at most 1024 UTF-8 bytes, not a common or breached password, not the username.' }),
  },
  { additionalProperties: false },
)
type PasswordBody = Static<typeof PasswordBody>

const PasswordChanged = Type.Object(
  {
    sessions_revoked: Type.Integer({ description: 'Refresh-token families revoked: every live one of the user except the caller\'s own.' }),
    sso_sessions_ended: Type.Integer({ description: 'Browser SSO sessions ended: every one of the user except the one the caller\'s session belongs to.' }),
  },
  { additionalProperties: false },
)

const AccountSession = Type.Object(
  {
    id: Type.String({ description: 'The session (refresh-token family) id: the `sid` of its access tokens.' }),
    current: Type.Boolean({ description: 'True for the session of the token making this call.' }),
    client_id: Type.String(),
    client_name: Type.String(),
    created_at: DateTime,
    auth_time: DateTime,
    expires_at: Type.String({ format: 'date-time', description: 'The absolute limit: the session ends then at the latest.' }),
    last_used_at: Nullable(DateTime),
    last_ip: Nullable(Type.String()),
    last_user_agent: Nullable(Type.String()),
    scope: Type.String(),
  },
  { additionalProperties: false },
)

const SessionsQuery = Type.Object(
  {
    limit: Type.Optional(Type.String({ pattern: '^[0-9]{1,7}$', description: `Page size, 1 to ${SESSIONS_MAX_LIMIT} (default 100).` })),
    cursor: Type.Optional(Type.String({ maxLength: 128, description: 'The `next_cursor` of the previous page.' })),
  },
  { additionalProperties: false },
)
type SessionsQuery = Static<typeof SessionsQuery>

const SessionsPage = Type.Object(
  {
    sessions: Type.Array(AccountSession, { description: 'Live sessions, newest first.' }),
    next_cursor: Nullable(Type.String({ description: 'Pass as `cursor` for the next page; null on the last one.' })),
  },
  { additionalProperties: false },
)

const SessionParams = Type.Object({ id: Type.String({ pattern: '^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$', description: 'A session id from `GET /account/sessions`.' }) })
type SessionParams = Static<typeof SessionParams>

const Revoked = Type.Object({ revoked: Type.Boolean({ description: 'False when the session had been revoked already.' }) }, { additionalProperties: false })

const security = [{ bearer: [] }]
const tags = ['account']

/** A route schema with its OpenAPI fields (`summary`, `tags`, `security`: typed by @fastify/swagger once registered). */
const doc = (schema: FastifySchema & { summary: string; description?: string; tags: string[]; security: Record<string, string[]>[] }): FastifySchema => schema

/**
 * The self-service account API (docs/account.md): a user's own profile, password and sessions,
 * with the user's own access token carrying `tessera:account` (`accountGuard`, which runs before
 * the body is parsed). Every answer is `Cache-Control: no-store`.
 */
export function accountRoutes(app: FastifyInstance, s: Services): void {
  const onRequest = accountGuard(s)

  app.get('/account', {
    onRequest,
    schema: doc({ summary: 'Read your own account', tags, security, response: { 200: Profile, ...errorResponses(401, 403) } }),
  }, async (req, reply) => {
    const account = await findAccount(s.db, accountCaller(req).userId)
    if (!account) throw new OAuthError('invalid_token', 'the access token is invalid', 'user disabled or deleted').withScheme('Bearer')
    return reply.header('cache-control', 'no-store').send(account)
  })
  methodNotAllowed(app, '/account', ['GET'])

  app.post<{ Body: PasswordBody }>('/account/password', {
    onRequest,
    schema: doc({
      summary: 'Change your own password',
      description: 'Checks `current_password` like a login (same throttle, same hashing queue); on success every other session and SSO session of the user ends.',
      tags, security, body: PasswordBody,
      response: { 200: PasswordChanged, ...errorResponses(400, 401, 403, 429, 503) },
    }),
  }, async (req, reply) => {
    const caller = accountCaller(req)
    const changed = await changePassword(s.db, s, {
      userId: caller.userId, clientId: caller.clientId, familyId: caller.familyId,
      currentPassword: req.body.current_password, newPassword: req.body.new_password,
    }, requestContext(req))
    s.metrics.refreshEvent('revoked', 'password_changed', changed.sessionsRevoked)
    void s.backchannel.notify(changed.ssoSessionsEnded)
    return reply.header('cache-control', 'no-store').send({ sessions_revoked: changed.sessionsRevoked, sso_sessions_ended: changed.ssoSessionsEnded.length })
  })
  methodNotAllowed(app, '/account/password', ['POST'])

  app.get<{ Querystring: SessionsQuery }>('/account/sessions', {
    onRequest,
    schema: doc({ summary: 'List your own sessions', tags, security, querystring: SessionsQuery, response: { 200: SessionsPage, ...errorResponses(400, 401, 403) } }),
  }, async (req, reply) => {
    const caller = accountCaller(req)
    const limit = req.query.limit === undefined ? undefined : parseLimit(req.query.limit, SESSIONS_MAX_LIMIT)
    const cursor = req.query.cursor === undefined ? undefined : parseSessionCursor(req.query.cursor)
    const page = await accountSessions(s.db, caller.userId, caller.familyId, { ...(limit ? { limit } : {}), cursor })
    return reply.header('cache-control', 'no-store').send({ sessions: page.sessions, next_cursor: page.nextCursor })
  })
  methodNotAllowed(app, '/account/sessions', ['GET'])

  app.delete<{ Params: SessionParams }>('/account/sessions/:id', {
    onRequest,
    schema: doc({ summary: 'Revoke one of your own sessions', tags, security, params: SessionParams, response: { 200: Revoked, ...errorResponses(400, 401, 403, 404) } }),
  }, async (req, reply) => {
    const outcome = await revokeAccountSession(s.db, accountCaller(req).userId, req.params.id.toLowerCase(), requestContext(req))
    if (outcome === 'not_found') throw new OAuthError('invalid_request', 'no such session').withStatus(404)
    if (outcome.revoked) s.metrics.refreshEvent('revoked', 'revoked_by_user')
    return reply.header('cache-control', 'no-store').send(outcome)
  })
  methodNotAllowed(app, '/account/sessions/:id', ['DELETE'])
}
