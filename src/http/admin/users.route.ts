// The users admin API (issue 14; docs/admin-users.md): create, read, list, update, set a password,
// disable, enable, delete. Guarded per area (`tessera:admin:users[:read]`) before the body is read;
// concurrency through ETag / If-Match and Idempotency-Key (`preconditions.ts`).
import { Type, type Static } from '@sinclair/typebox'
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import type { AuditContext } from '../../audit/context.js'
import { InputError } from '../../errors.js'
import type { Services } from '../../services.js'
import { parseUserRef } from '../../sessions/params.js'
import { createUserAsAdmin, deleteUserAsAdmin, disableUserAsAdmin, enableUserAsAdmin, noSuchUser, setPasswordAsAdmin, updateUserAsAdmin } from '../../users/admin-users.js'
import { passwordPolicyProblem } from '../../users/passwords.js'
import { normalizeUsername, type User } from '../../users/user.js'
import { parseProfile, parseRoles, parseUsername } from '../../users/user-input.js'
import { findUserByRef, listUsersPage } from '../../users/users.store.js'
import { methodNotAllowed } from '../not-allowed.js'
import { requestContext } from '../params.js'
import { errorResponses } from '../schemas/common.js'
import { adminGuard, adminOf } from './guard.js'
import { etagOf, idempotencyOf, ifMatchVersions, sendCreated } from './preconditions.js'
import { documented, namingSchemaErrors } from './validation.js'

export const USERS_DEFAULT_LIMIT = 50
export const USERS_MAX_LIMIT = 500

const Profile = Type.Object(
  {
    name: Type.Union([Type.String(), Type.Null()], { description: 'Display name (the `name` claim); null: none.' }),
    email: Type.Union([Type.String(), Type.Null()], { description: 'E-mail address (the `email` claim); null: none.' }),
    email_verified: Type.Boolean({ description: 'Whether the e-mail address is verified (the `email_verified` claim).' }),
  },
  { additionalProperties: false },
)

const UserBody = Type.Object(
  {
    id: Type.String({ format: 'uuid' }),
    username: Type.String({ description: 'Normalised: Unicode NFKC, then lower case.' }),
    roles: Type.Array(Type.String()),
    profile: Profile,
    disabled: Type.Boolean(),
    has_password: Type.Boolean({ description: 'False for a user created without a password (no password login).' }),
    version: Type.Integer({ description: 'The version; the ETag is `"v<version>"`.' }),
    created_at: Type.String({ format: 'date-time' }),
    updated_at: Type.String({ format: 'date-time' }),
  },
  { additionalProperties: false, description: 'A user.' },
)
type UserBody = Static<typeof UserBody>

const UserParams = Type.Object({ user: Type.String({ description: 'A user id (UUID) or a username (normalised before lookup).' }) })
type UserParams = Static<typeof UserParams>

const ProfileInput = Type.Object(
  {
    name: Type.Optional(Type.Union([Type.String({ maxLength: 1024 }), Type.Null()])),
    email: Type.Optional(Type.Union([Type.String({ maxLength: 1024 }), Type.Null()])),
    email_verified: Type.Optional(Type.Union([Type.Boolean(), Type.Null()])),
  },
  { additionalProperties: false, description: 'Profile attributes; null clears one (email_verified: null means false).' },
)

const CreateBody = Type.Object(
  {
    username: Type.String({ maxLength: 1024, description: 'Letters, digits and . _ @ + - (at most 256 after normalisation).' }),
    password: Type.Optional(Type.String({ maxLength: 4096, description: 'Checked by the password policy; without one the user cannot log in with a password.' })),
    roles: Type.Optional(Type.Array(Type.String({ maxLength: 64 }), { maxItems: 64 })),
    profile: Type.Optional(ProfileInput),
  },
  { additionalProperties: false },
)
type CreateBody = Static<typeof CreateBody>

const PatchBody = Type.Object(
  { profile: Type.Optional(ProfileInput), roles: Type.Optional(Type.Array(Type.String({ maxLength: 64 }), { maxItems: 64, description: 'Replaces the roles.' })) },
  { additionalProperties: false, minProperties: 1 },
)
type PatchBody = Static<typeof PatchBody>

const PasswordBody = Type.Object(
  {
    password: Type.String({ maxLength: 4096 }),
    revoke_sessions: Type.Optional(Type.Boolean({ default: true, description: "Revoke the user's refresh-token families (default true)." })),
  },
  { additionalProperties: false },
)
type PasswordBody = Static<typeof PasswordBody>

const ListQuery = Type.Object({
  limit: Type.Optional(Type.String({ pattern: '^[0-9]{1,4}$', description: `Page size, 1 to ${USERS_MAX_LIMIT} (default ${USERS_DEFAULT_LIMIT}).` })),
  cursor: Type.Optional(Type.String({ maxLength: 2048, description: 'The `next_cursor` of the previous page.' })),
  prefix: Type.Optional(Type.String({ maxLength: 1024, description: 'Only usernames starting with this (normalised first).' })),
  disabled: Type.Optional(Type.Union([Type.Literal('true'), Type.Literal('false')])),
})
type ListQuery = Static<typeof ListQuery>

const ListBody = Type.Object(
  { users: Type.Array(UserBody), next_cursor: Type.Union([Type.String(), Type.Null()], { description: 'Pass as `cursor` for the next page; null on the last.' }) },
  { additionalProperties: false },
)

const EndedBody = Type.Object(
  { user: UserBody, families_revoked: Type.Integer(), sso_sessions_ended: Type.Integer() },
  { additionalProperties: false },
)
const PasswordResult = Type.Object({ user: UserBody, families_revoked: Type.Integer(), sso_sessions_ended: Type.Integer() }, { additionalProperties: false })

const IfMatch = Type.Object({ 'if-match': Type.Optional(Type.String({ description: 'The ETag of the user as last read (`"v3"`).' })) })
const IdempotencyKey = Type.Object({ 'idempotency-key': Type.Optional(Type.String({ description: '1–255 printable ASCII characters: a retry with the same key and request gets the first response.' })) })

const security = [{ bearer: [] }]
const tags = ['admin']

export function userBody(u: User): UserBody {
  return {
    id: u.id, username: u.username, roles: u.roles,
    profile: { name: u.profile.name, email: u.profile.email, email_verified: u.profile.emailVerified },
    disabled: u.disabled, has_password: u.passwordHash !== '', version: u.version,
    created_at: u.createdAt.toISOString(), updated_at: u.updatedAt.toISOString(),
  }
}

const adminContext = (req: FastifyRequest): AuditContext => ({ ...requestContext(req), actor: { via: 'admin_api', clientId: adminOf(req).client_id } })

/** The user of a `{user}` path segment (a UUID is an id, anything else a username), or 404. */
async function userOf(s: Services, value: string): Promise<User> {
  const user = await findUserByRef(s.db, parseUserRef(value))
  if (!user) throw noSuchUser()
  return user
}

/** The optional If-Match of an action (password, disable, enable, delete): checked when sent. */
function optionalIfMatch(req: FastifyRequest): number[] | undefined {
  return req.headers['if-match'] === undefined ? undefined : ifMatchVersions(req)
}

async function checkedPasswordHash(s: Services, password: string, username: string): Promise<string> {
  const problem = await passwordPolicyProblem(password, username)
  if (problem) throw new InputError(`body/${problem}`)
  return s.passwords.hash(password)
}

const sendUser = (reply: FastifyReply, user: User, status = 200) => reply.code(status).header('cache-control', 'no-store').header('etag', etagOf(user.version)).send(userBody(user))

export function adminUsersRoute(app: FastifyInstance, s: Services): void {
  const read = adminGuard(s, { area: 'users', write: false })
  const write = adminGuard(s, { area: 'users', write: true })
  const common = { schemaErrorFormatter: namingSchemaErrors }

  app.post<{ Body: CreateBody }>('/admin/users', {
    ...common,
    onRequest: write,
    schema: documented({
      summary: 'Create a user', tags, security, headers: IdempotencyKey, body: CreateBody,
      response: { 201: UserBody, ...errorResponses(400, 401, 403, 409, 422, 503) },
    }),
  }, async (req, reply) => {
    const b = req.body
    const username = parseUsername(b.username, 'body/username')
    const roles = parseRoles(b.roles ?? [], 'body/roles')
    const profile = parseProfile({ name: b.profile?.name, email: b.profile?.email, emailVerified: b.profile?.email_verified }, { name: 'body/profile/name', email: 'body/profile/email', emailVerified: 'body/profile/email_verified' })
    const actor = adminOf(req).client_id
    const request = idempotencyOf(req, actor, ['password'])
    const passwordHash = b.password === undefined ? '' : await checkedPasswordHash(s, b.password, username)
    const respond = (u: User) => ({ status: 201, headers: { location: `/admin/users/${u.id}`, etag: etagOf(u.version) }, body: userBody(u) })
    const r = await createUserAsAdmin(s.db, { username, passwordHash, roles, profile }, adminContext(req), request && { request, respond })
    return sendCreated(reply, r, respond)
  })

  app.get<{ Querystring: ListQuery }>('/admin/users', {
    ...common,
    onRequest: read,
    schema: documented({
      summary: 'List users (cursor pagination, filters)', tags, security, querystring: ListQuery,
      response: { 200: ListBody, ...errorResponses(400, 401, 403) },
    }),
  }, async (req, reply) => {
    const q = req.query
    const limit = q.limit === undefined ? USERS_DEFAULT_LIMIT : Number(q.limit)
    if (limit < 1 || limit > USERS_MAX_LIMIT) throw new InputError(`querystring/limit must be an integer from 1 to ${USERS_MAX_LIMIT}`)
    let after: string | undefined
    if (q.cursor !== undefined) {
      after = Buffer.from(q.cursor, 'base64url').toString('utf8')
      if (after === '' || Buffer.from(after, 'utf8').toString('base64url') !== q.cursor) throw new InputError('querystring/cursor must be the next_cursor of a previous page')
    }
    const prefix = q.prefix === undefined ? undefined : normalizeUsername(q.prefix)
    const rows = await listUsersPage(s.db, { limit: limit + 1, after, prefix, disabled: q.disabled === undefined ? undefined : q.disabled === 'true' })
    const users = rows.slice(0, limit)
    const next = rows.length > limit ? Buffer.from(users[users.length - 1]!.username, 'utf8').toString('base64url') : null
    return reply.header('cache-control', 'no-store').send({ users: users.map(userBody), next_cursor: next })
  })
  methodNotAllowed(app, '/admin/users', ['GET', 'POST'])

  app.get<{ Params: UserParams }>('/admin/users/:user', {
    ...common,
    onRequest: read,
    schema: documented({ summary: 'Read a user', tags, security, params: UserParams, response: { 200: UserBody, ...errorResponses(400, 401, 403, 404) } }),
  }, async (req, reply) => sendUser(reply, await userOf(s, req.params.user)))

  app.patch<{ Params: UserParams; Body: PatchBody }>('/admin/users/:user', {
    ...common,
    onRequest: write,
    schema: documented({
      summary: "Update a user's profile attributes and roles (If-Match required)", tags, security, params: UserParams, headers: IfMatch, body: PatchBody,
      response: { 200: UserBody, ...errorResponses(400, 401, 403, 404, 412, 428) },
    }),
  }, async (req, reply) => {
    const b = req.body
    const versions = ifMatchVersions(req)
    const profile = b.profile && parseProfile({ name: b.profile.name, email: b.profile.email, emailVerified: b.profile.email_verified }, { name: 'body/profile/name', email: 'body/profile/email', emailVerified: 'body/profile/email_verified' })
    const roles = b.roles && parseRoles(b.roles, 'body/roles')
    const user = await userOf(s, req.params.user)
    return sendUser(reply, await updateUserAsAdmin(s.db, user.id, versions, { profile, roles }, adminContext(req)))
  })

  app.delete<{ Params: UserParams }>('/admin/users/:user', {
    ...common,
    onRequest: write,
    schema: documented({
      summary: 'Delete a user (revokes every session; audit events stay)', tags, security, params: UserParams, headers: IfMatch,
      response: { 204: Type.Null({ description: 'Deleted.' }), ...errorResponses(400, 401, 403, 404, 412) },
    }),
  }, async (req, reply) => {
    const versions = optionalIfMatch(req)
    const user = await userOf(s, req.params.user)
    const ended = await deleteUserAsAdmin(s.db, user, versions, adminContext(req))
    void s.backchannel.notify(ended.ssoSessions)
    return reply.code(204).header('cache-control', 'no-store').send()
  })
  methodNotAllowed(app, '/admin/users/:user', ['GET', 'PATCH', 'DELETE'])

  app.put<{ Params: UserParams; Body: PasswordBody }>('/admin/users/:user/password', {
    ...common,
    onRequest: write,
    schema: documented({
      summary: "Set a user's password (revokes their sessions unless revoke_sessions is false)", tags, security, params: UserParams, headers: IfMatch, body: PasswordBody,
      response: { 200: PasswordResult, ...errorResponses(400, 401, 403, 404, 412, 503) },
    }),
  }, async (req, reply) => {
    const versions = optionalIfMatch(req)
    const user = await userOf(s, req.params.user)
    const passwordHash = await checkedPasswordHash(s, req.body.password, user.username)
    const r = await setPasswordAsAdmin(s.db, user.id, versions, passwordHash, req.body.revoke_sessions !== false, adminContext(req))
    if (r.familiesRevoked > 0) s.metrics.refreshEvent('revoked', 'admin', r.familiesRevoked)
    void s.backchannel.notify(r.ssoSessions)
    return reply.header('cache-control', 'no-store').header('etag', etagOf(r.user.version)).send({ user: userBody(r.user), families_revoked: r.familiesRevoked, sso_sessions_ended: r.ssoSessions.length })
  })
  methodNotAllowed(app, '/admin/users/:user/password', ['PUT'])

  app.post<{ Params: UserParams }>('/admin/users/:user/disable', {
    ...common,
    onRequest: write,
    schema: documented({
      summary: 'Disable a user (revokes every refresh-token family and SSO session)', tags, security, params: UserParams, headers: IfMatch,
      response: { 200: EndedBody, ...errorResponses(400, 401, 403, 404, 412) },
    }),
  }, async (req, reply) => {
    const versions = optionalIfMatch(req)
    const user = await userOf(s, req.params.user)
    const r = await disableUserAsAdmin(s.db, user.id, versions, adminContext(req))
    if (r.familiesRevoked > 0) s.metrics.refreshEvent('revoked', 'admin', r.familiesRevoked)
    void s.backchannel.notify(r.ssoSessions)
    return reply.header('cache-control', 'no-store').header('etag', etagOf(r.user.version)).send({ user: userBody(r.user), families_revoked: r.familiesRevoked, sso_sessions_ended: r.ssoSessions.length })
  })
  methodNotAllowed(app, '/admin/users/:user/disable', ['POST'])

  app.post<{ Params: UserParams }>('/admin/users/:user/enable', {
    ...common,
    onRequest: write,
    schema: documented({
      summary: 'Enable a disabled user', tags, security, params: UserParams, headers: IfMatch,
      response: { 200: UserBody, ...errorResponses(400, 401, 403, 404, 412) },
    }),
  }, async (req, reply) => {
    const versions = optionalIfMatch(req)
    const user = await userOf(s, req.params.user)
    return sendUser(reply, await enableUserAsAdmin(s.db, user.id, versions, adminContext(req)))
  })
  methodNotAllowed(app, '/admin/users/:user/enable', ['POST'])
}
