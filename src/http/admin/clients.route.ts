// The clients admin API (docs/admin-clients.md): register, read, list, change, rotate the secret,
// disable, enable and delete. Guarded per area (`tessera:admin`, `tessera:admin:clients`, reads
// also `tessera:admin:clients:read`) before the body is read; every write is one audited
// transaction naming the acting client, and is answered once every live instance has applied it
// (the client row's trigger announces it; README "Changes reach every instance").
import { Type, type Static } from '@sinclair/typebox'
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import { runIdempotent } from '../../admin/idempotency.js'
import { requestContext } from '../params.js'
import type { AuditContext } from '../../audit/context.js'
import type { Client } from '../../clients/client.js'
import { API_NAMES, CLIENT_FIELDS, LIST_MAX, NAME_MAX, parseClientSettings, RATE_LIMIT_MAX, resolveNewClient, type ClientSettingsInput } from '../../clients/client-settings.js'
import { adminClientJson } from '../../clients/client-view.js'
import { CLIENTS_DEFAULT_LIMIT, CLIENTS_MAX_LIMIT, findClient, listClientsPage } from '../../clients/clients.store.js'
import { disableClientIfVersion, enableClient, type ClientChange } from '../../clients/disable-client.js'
import { deleteClient, MAX_SECRET_OVERLAP_SECONDS, registerClientIn, rotateClientSecret, updateClient } from '../../clients/manage-clients.js'
import { SIGNING_ALGS } from '../../config.js'
import { InputError, OAuthError } from '../../errors.js'
import { GRANT_TYPES, type GrantType } from '../../grants/grant-types.js'
import { keyPolicy } from '../../keys/policy.js'
import { awaitPropagation, type PropagationReport } from '../../propagation/await-propagation.js'
import type { Services } from '../../services.js'
import { errorResponses } from '../schemas/common.js'
import { methodNotAllowed } from '../not-allowed.js'
import { ADMIN_SCOPE, adminGuard, adminOf } from './guard.js'
import { etagOf, idempotencyOf, ifMatchVersions, sendCreated, versionMismatch } from './preconditions.js'
import { documented, namingSchemaErrors } from './validation.js'

// --- Schemas (TypeBox: validation, types and the OpenAPI document from one definition)

const Uri = Type.String({ minLength: 1, maxLength: 2000 })

/** Every setting, each optional: the body of PATCH; POST adds `required`. */
const settingsProperties = {
  name: Type.String({ minLength: 1, maxLength: NAME_MAX, description: 'A name for people (shown on the consent page).' }),
  public: Type.Boolean({ description: 'A public client (no secret: browser and native apps). Default false (confidential). Cannot change after registration.' }),
  grant_types: Type.Array(Type.Union(GRANT_TYPES.map((g) => Type.Literal(g))), { minItems: 1, maxItems: GRANT_TYPES.length * 2, description: 'The grants it may use at /token.' }),
  scopes: Type.Array(Type.String({ minLength: 1, maxLength: 200 }), { maxItems: LIST_MAX, description: 'The scopes it may ask for (RFC 6749 scope tokens). Default none.' }),
  audience: Type.Array(Type.String({ minLength: 1, maxLength: 2000 }), { maxItems: LIST_MAX, description: 'The `aud` of its access tokens. Default: the issuer.' }),
  refresh_delivery: Type.Union([Type.Literal('body'), Type.Literal('cookie')], { description: 'Where refresh tokens go. Default cookie for a public client with allowed_origins, else body.' }),
  allowed_origins: Type.Array(Type.String({ minLength: 1, maxLength: 2000 }), { maxItems: LIST_MAX, description: 'Browser origins allowed to call it (CORS, cookie refresh): scheme://host[:port].' }),
  id_token_signed_response_alg: Type.Union(SIGNING_ALGS.map((a) => Type.Literal(a)), { description: 'The key line of its ID tokens (a line that signs here). Default RS256.' }),
  rate_limit_per_second: Type.Union([Type.Integer({ minimum: 0, maximum: RATE_LIMIT_MAX }), Type.Null()], { description: '/token requests per second on each instance; 0 = no limit; null = CLIENT_RATE_LIMIT_PER_SECOND.' }),
  redirect_uris: Type.Array(Uri, { maxItems: LIST_MAX, description: 'Registered redirect URIs, compared exactly (needed by authorization_code).' }),
  post_logout_redirect_uris: Type.Array(Uri, { maxItems: LIST_MAX, description: 'Where RP-initiated logout may send the browser back to.' }),
  first_party: Type.Boolean({ description: 'Skip the consent page. Default false.' }),
  backchannel_logout_uri: Type.Union([Uri, Type.Null()], { description: 'Where back-channel logout tokens are POSTed; null: none.' }),
  require_pushed_authorization_requests: Type.Boolean({ description: 'Its authorization requests must be pushed (/par). Default false.' }),
}

/** POST: `name` and `grant_types` required, every other setting optional. */
const CreateBodySchema = Type.Composite(
  [Type.Object({ name: settingsProperties.name, grant_types: settingsProperties.grant_types }), Type.Partial(Type.Omit(Type.Object(settingsProperties), ['name', 'grant_types']))],
  { additionalProperties: false, description: 'A new client: `name` and `grant_types` are required; every other setting has a default.' },
)
type CreateBody = Static<typeof CreateBodySchema>

const PatchBody = Type.Partial(Type.Object(settingsProperties), { additionalProperties: false, minProperties: 1, description: 'The settings to change; those left out keep their value. `public` cannot change.' })
type PatchBody = Static<typeof PatchBody>

const RotateBody = Type.Object(
  { overlap_seconds: Type.Optional(Type.Integer({ minimum: 0, maximum: MAX_SECRET_OVERLAP_SECONDS, description: 'How long the old secret keeps working; 0 = it stops at once. Default CLIENT_SECRET_OVERLAP_SECONDS.' })) },
  { additionalProperties: false },
)
type RotateBody = Static<typeof RotateBody>

const DateTime = Type.String({ format: 'date-time' })

const ClientView = Type.Object(
  {
    client_id: Type.String(),
    name: Type.String(),
    type: Type.Union([Type.Literal('public'), Type.Literal('confidential')]),
    grant_types: Type.Array(Type.String()),
    scopes: Type.Array(Type.String()),
    audience: Type.Array(Type.String()),
    refresh_delivery: Type.Union([Type.Literal('body'), Type.Literal('cookie')]),
    allowed_origins: Type.Array(Type.String()),
    id_token_signed_response_alg: Type.String(),
    rate_limit_per_second: Type.Union([Type.Integer(), Type.Null()]),
    redirect_uris: Type.Array(Type.String()),
    post_logout_redirect_uris: Type.Array(Type.String()),
    first_party: Type.Boolean(),
    backchannel_logout_uri: Type.Union([Type.String(), Type.Null()]),
    require_pushed_authorization_requests: Type.Boolean(),
    disabled: Type.Boolean(),
    created_at: DateTime,
    updated_at: DateTime,
    version: Type.Integer({ description: 'Bumped by every change; the ETag is "v<version>".' }),
    previous_secret_expires_at: Type.Union([DateTime, Type.Null()], { description: 'Until when the secret the last rotation replaced still works (null: none; in the past: it has stopped).' }),
  },
  { description: 'A client. Never its secret or a hash of it (except `client_secret` in the answers of a create and a rotation).' },
)

const InstanceRef = Type.Object({ instance: Type.String(), host: Type.String(), pid: Type.Integer(), change_version: Type.Integer() })
const Propagation = Type.Object(
  {
    version: Type.Integer(),
    confirmed: Type.Array(InstanceRef),
    unconfirmed: Type.Array(InstanceRef),
    stale: Type.Array(InstanceRef),
    waited_ms: Type.Integer(),
    error: Type.Optional(Type.String()),
  },
  { description: 'Which instances applied the change before the answer (README "Changes reach every instance").' },
)

const Created = Type.Composite([
  ClientView,
  Type.Object({
    client_secret: Type.Optional(Type.String({ description: 'The secret of a confidential client: shown in this answer only. Absent for a public client and in an Idempotency-Key replay.' })),
    propagation: Type.Optional(Propagation),
  }),
])
const Changed = Type.Composite([ClientView, Type.Object({ propagation: Propagation })])
const Rotated = Type.Composite([
  ClientView,
  Type.Object({
    client_secret: Type.String({ description: 'The new secret: shown in this answer only.' }),
    overlap_seconds: Type.Integer(),
    propagation: Propagation,
  }),
])
const ClientList = Type.Object({
  clients: Type.Array(ClientView),
  next_cursor: Type.Union([Type.String(), Type.Null()], { description: 'Pass as `cursor` for the next page; null on the last.' }),
})

const IdParams = Type.Object({ id: Type.String({ minLength: 1, maxLength: 128, description: 'The client_id.' }) })
type IdParams = Static<typeof IdParams>

const ListQuery = Type.Object(
  {
    limit: Type.Optional(Type.String({ pattern: '^[0-9]{1,4}$', description: `Clients per page, 1–${CLIENTS_MAX_LIMIT} (default ${CLIENTS_DEFAULT_LIMIT}).` })),
    cursor: Type.Optional(Type.String({ maxLength: 400, description: 'The `next_cursor` of the previous page.' })),
    disabled: Type.Optional(Type.Union([Type.Literal('true'), Type.Literal('false')], { description: 'Only disabled (true) or enabled (false) clients.' })),
    name_prefix: Type.Optional(Type.String({ minLength: 1, maxLength: NAME_MAX, description: 'Only names starting with this (case-sensitive).' })),
    type: Type.Optional(Type.Union([Type.Literal('public'), Type.Literal('confidential')])),
    grant_type: Type.Optional(Type.Union(GRANT_TYPES.map((g) => Type.Literal(g)), { description: 'Only clients allowed this grant.' })),
  },
  { additionalProperties: true },
)
type ListQuery = Static<typeof ListQuery>

const IfMatchOptional = Type.Object({ 'if-match': Type.Optional(Type.String({ description: 'The ETag as last read ("v<N>"): the call is refused with 412 when the client changed since.' })) })
const IfMatchRequired = Type.Object({ 'if-match': Type.Optional(Type.String({ description: 'Required: the ETag as last read ("v<N>"). Missing → 428; stale → 412.' })) })
const IdempotencyHeader = Type.Object({ 'idempotency-key': Type.Optional(Type.String({ description: 'Makes a retried create create one client (24 h). A replay answers the stored response WITHOUT client_secret, with Idempotency-Replayed: true; the key with another body → 422.' })) })

const SECURITY = [{ bearer: [] }]

const TAGS = ['admin']

// --- Helpers

const noSuchClient = () => new OAuthError('invalid_request', 'no such client').withStatus(404)

/** The audit context of an admin call: the request and the acting admin client. */
function adminContext(req: FastifyRequest): AuditContext {
  return { ...requestContext(req), actor: { via: 'admin_api', clientId: adminOf(req).client_id } }
}

/** The versions an optional `If-Match` allows (undefined: none sent, no check). */
function optionalIfMatch(req: FastifyRequest): number[] | undefined {
  return req.headers['if-match'] === undefined ? undefined : ifMatchVersions(req)
}

/** The value of a version-checked change, or its 404 / 412. */
function done<T>(r: ClientChange<T>): T {
  if (r.kind === 'not_found') throw noSuchClient()
  if (r.kind === 'stale') throw versionMismatch()
  return r.value
}

const CURSOR_TIME = /^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(\.\d{1,6})?[+-]\d\d(:\d\d){0,2}$/

function encodeCursor(next: { createdAt: string; id: string } | null): string | null {
  return next === null ? null : Buffer.from(JSON.stringify([next.createdAt, next.id])).toString('base64url')
}

function decodeCursor(cursor: string): { createdAt: string; id: string } {
  try {
    const v = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8')) as unknown
    if (Array.isArray(v) && v.length === 2 && typeof v[0] === 'string' && CURSOR_TIME.test(v[0]) && typeof v[1] === 'string' && v[1].length <= 128) return { createdAt: v[0], id: v[1] }
  } catch {
    // below
  }
  throw new InputError('querystring/cursor is not a next_cursor this API gave')
}

/** The answer of a read or a change: no-store, and the client's ETag. */
function withEtag(reply: FastifyReply, c: Client): FastifyReply {
  return reply.header('cache-control', 'no-store').header('etag', etagOf(c.version))
}

/**
 * After a change: applies it to this instance, then waits until every live instance has
 * (README "Changes reach every instance"), at most PROPAGATION_WAIT_SECONDS.
 */
async function propagated(s: Services): Promise<PropagationReport> {
  await s.changes.applyNow()
  return awaitPropagation(s.db, { clock: s.clock, waitSeconds: s.config.propagationWaitSeconds, staleSeconds: s.config.instanceStaleSeconds })
}

/** The settings fields of a body, as the shared parser takes them. */
function settingsInput(body: Record<string, unknown>): ClientSettingsInput {
  const input: ClientSettingsInput = {}
  for (const f of CLIENT_FIELDS) if (body[f] !== undefined) input[f] = body[f]
  return input
}

/** A client by id, or 404. */
async function clientOr404(s: Services, id: string): Promise<Client> {
  const c = await findClient(s.db, id)
  if (!c) throw noSuchClient()
  return c
}

/** `tessera:admin` or one of its narrower scopes (`tessera:admin:users`, …). */
const isAdminScope = (scope: string) => scope === ADMIN_SCOPE || scope.startsWith(`${ADMIN_SCOPE}:`)

/**
 * No privilege escalation through the clients area: only a caller holding the full
 * `tessera:admin` scope may give a client an admin scope, or change, rotate, disable, enable or
 * delete a client that has one. Otherwise `tessera:admin:clients` could register a client with
 * `tessera:admin` (or take over an admin client's secret) and so reach the whole admin API.
 */
function refuseAdminEscalation(req: FastifyRequest, scopes: readonly string[] | undefined): void {
  if (!scopes?.some(isAdminScope)) return
  if (adminOf(req).scope?.split(' ').includes(ADMIN_SCOPE)) return
  throw new OAuthError('insufficient_scope', `only a ${ADMIN_SCOPE} token may give a client an admin scope or manage a client that has one`).withScheme('Bearer')
}

/** `refuseAdminEscalation` for the client a call changes (404 when there is none). */
async function refuseAdminTarget(s: Services, req: FastifyRequest, id: string): Promise<void> {
  refuseAdminEscalation(req, (await clientOr404(s, id)).scopes)
}

// --- Routes

export function adminClientsRoute(app: FastifyInstance, s: Services): void {
  const read = adminGuard(s, { area: 'clients', write: false })
  const write = adminGuard(s, { area: 'clients', write: true })
  const lines = () => keyPolicy(s.config).lines

  app.post<{ Body: CreateBody }>('/admin/clients', {
    onRequest: write,
    schemaErrorFormatter: namingSchemaErrors,
    // Every setting of `tessera clients create`. 201 with Location and ETag. With an Idempotency-Key, a retry gets the stored answer without the secret (it is never stored).
    schema: documented({
      summary: 'Register a client; its secret is in this answer only',
      tags: TAGS,
      security: SECURITY,
      headers: IdempotencyHeader,
      body: CreateBodySchema,
      response: { 201: Created, ...errorResponses(400, 401, 403, 422, 503) },
    }),
  }, async (req, reply) => {
    const settings = resolveNewClient(parseClientSettings(settingsInput(req.body), API_NAMES), API_NAMES)
    refuseAdminEscalation(req, settings.scopes)
    const ctx = adminContext(req)
    const idem = idempotencyOf(req, adminOf(req).client_id)
    const location = (c: Client) => `/admin/clients/${encodeURIComponent(c.id)}`
    const r = await runIdempotent(s.db, idem, async (trx) => {
      const created = await registerClientIn(trx, settings, { lines: lines(), names: API_NAMES, ctx })
      // What a retry gets: the client WITHOUT its secret (a secret is never stored, here or anywhere).
      const stored = { status: 201, headers: { location: location(created.client), etag: etagOf(created.client.version) }, body: JSON.parse(JSON.stringify(adminClientJson(created.client))) as unknown }
      return { result: created, stored }
    })
    const propagation = r.replayed ? undefined : await propagated(s)
    return sendCreated(reply, r, ({ client, secret }) => ({
      status: 201,
      headers: { location: location(client), etag: etagOf(client.version) },
      body: { ...adminClientJson(client), ...(secret !== undefined ? { client_secret: secret } : {}), propagation },
    }))
  })

  app.get<{ Querystring: ListQuery }>('/admin/clients', {
    onRequest: read,
    schemaErrorFormatter: namingSchemaErrors,
    schema: documented({
      summary: 'List clients, oldest first, one page at a time',
      tags: TAGS,
      security: SECURITY,
      querystring: ListQuery,
      response: { 200: ClientList, ...errorResponses(400, 401, 403, 503) },
    }),
  }, async (req, reply) => {
    const q = req.query
    const limit = q.limit === undefined ? undefined : Number(q.limit)
    if (limit !== undefined && (limit < 1 || limit > CLIENTS_MAX_LIMIT)) throw new InputError(`querystring/limit must be from 1 to ${CLIENTS_MAX_LIMIT}`)
    const page = await listClientsPage(s.db, {
      limit,
      after: q.cursor === undefined ? undefined : decodeCursor(q.cursor),
      disabled: q.disabled === undefined ? undefined : q.disabled === 'true',
      namePrefix: q.name_prefix,
      type: q.type,
      grantType: q.grant_type as GrantType | undefined,
    })
    return reply.header('cache-control', 'no-store').send({ clients: page.clients.map(adminClientJson), next_cursor: encodeCursor(page.next) })
  })

  app.get<{ Params: IdParams }>('/admin/clients/:id', {
    onRequest: read,
    schemaErrorFormatter: namingSchemaErrors,
    schema: documented({
      summary: 'Read a client (with its ETag)',
      tags: TAGS,
      security: SECURITY,
      params: IdParams,
      response: { 200: ClientView, ...errorResponses(400, 401, 403, 404, 503) },
    }),
  }, async (req, reply) => {
    const c = await clientOr404(s, req.params.id)
    return withEtag(reply, c).send(adminClientJson(c))
  })

  app.patch<{ Params: IdParams; Body: PatchBody }>('/admin/clients/:id', {
    onRequest: write,
    schemaErrorFormatter: namingSchemaErrors,
    // The settings sent replace the current ones; the rest keep their value. The combination is checked as at registration. A change that changes nothing keeps the version and records nothing.
    schema: documented({
      summary: 'Change settings of a client (If-Match required)',
      tags: TAGS,
      security: SECURITY,
      params: IdParams,
      headers: IfMatchRequired,
      body: PatchBody,
      response: { 200: Changed, ...errorResponses(400, 401, 403, 404, 412, 428, 503) },
    }),
  }, async (req, reply) => {
    // 428 before the settings are checked (the body's shape was validated already).
    const versions = ifMatchVersions(req)
    const patch = parseClientSettings(settingsInput(req.body), API_NAMES)
    refuseAdminEscalation(req, patch.scopes)
    await refuseAdminTarget(s, req, req.params.id)
    const { client } = done(await updateClient(s.db, req.params.id, patch, { lines: lines(), names: API_NAMES, ctx: adminContext(req), expectedVersions: versions }))
    return withEtag(reply, client).send({ ...adminClientJson(client), propagation: await propagated(s) })
  })

  app.post<{ Params: IdParams; Body: RotateBody }>('/admin/clients/:id/secret', {
    onRequest: write,
    // The body is optional: none is `{}` (the configured overlap).
    preValidation: async (req) => {
      if (req.body === undefined || req.body === null) req.body = {}
    },
    schemaErrorFormatter: namingSchemaErrors,
    // The replaced secret keeps authenticating for overlap_seconds (default CLIENT_SECRET_OVERLAP_SECONDS), then stops; a secret replaced by an earlier rotation stops at once. If-Match optional.
    schema: documented({
      summary: 'Rotate the secret; the new one is in this answer only, the old one works for the overlap',
      tags: TAGS,
      security: SECURITY,
      params: IdParams,
      headers: IfMatchOptional,
      body: RotateBody,
      response: { 200: Rotated, ...errorResponses(400, 401, 403, 404, 412, 428, 503) },
    }),
  }, async (req, reply) => {
    const versions = optionalIfMatch(req)
    await refuseAdminTarget(s, req, req.params.id)
    const overlapSeconds = req.body.overlap_seconds ?? s.config.clientSecretOverlapSeconds
    const r = done(await rotateClientSecret(s.db, req.params.id, { overlapSeconds, nowMs: s.clock.nowMs(), ctx: adminContext(req), expectedVersions: versions }))
    return withEtag(reply, r.client).send({ ...adminClientJson(r.client), client_secret: r.secret, overlap_seconds: overlapSeconds, propagation: await propagated(s) })
  })

  app.post<{ Params: IdParams }>('/admin/clients/:id/disable', {
    onRequest: write,
    schemaErrorFormatter: namingSchemaErrors,
    schema: documented({
      summary: 'Disable a client: revokes every refresh-token family of it; every instance refuses it',
      tags: TAGS,
      security: SECURITY,
      params: IdParams,
      headers: IfMatchOptional,
      response: { 200: Changed, ...errorResponses(400, 401, 403, 404, 412, 428, 503) },
    }),
  }, async (req, reply) => {
    await refuseAdminTarget(s, req, req.params.id)
    const { familiesRevoked } = done(await disableClientIfVersion(s.db, req.params.id, adminContext(req), optionalIfMatch(req)))
    if (familiesRevoked > 0) s.metrics.refreshEvent('revoked', 'client_disabled', familiesRevoked)
    const c = await clientOr404(s, req.params.id)
    return withEtag(reply, c).send({ ...adminClientJson(c), propagation: await propagated(s) })
  })

  app.post<{ Params: IdParams }>('/admin/clients/:id/enable', {
    onRequest: write,
    schemaErrorFormatter: namingSchemaErrors,
    schema: documented({
      summary: 'Enable a disabled client (its revoked families stay revoked)',
      tags: TAGS,
      security: SECURITY,
      params: IdParams,
      headers: IfMatchOptional,
      response: { 200: Changed, ...errorResponses(400, 401, 403, 404, 412, 428, 503) },
    }),
  }, async (req, reply) => {
    await refuseAdminTarget(s, req, req.params.id)
    const { client } = done(await enableClient(s.db, req.params.id, adminContext(req), optionalIfMatch(req)))
    return withEtag(reply, client).send({ ...adminClientJson(client), propagation: await propagated(s) })
  })

  app.delete<{ Params: IdParams }>('/admin/clients/:id', {
    onRequest: write,
    schemaErrorFormatter: namingSchemaErrors,
    schema: documented({
      summary: 'Delete a client: revokes everything it holds; its audit rows stay',
      tags: TAGS,
      security: SECURITY,
      params: IdParams,
      headers: IfMatchOptional,
      response: { 204: Type.Null({ description: 'Deleted; every live instance has applied it (or PROPAGATION_WAIT_SECONDS passed).' }), ...errorResponses(400, 401, 403, 404, 412, 428, 503) },
    }),
  }, async (req, reply) => {
    await refuseAdminTarget(s, req, req.params.id)
    const { familiesRevoked } = done(await deleteClient(s.db, req.params.id, { ctx: adminContext(req), expectedVersions: optionalIfMatch(req) }))
    if (familiesRevoked > 0) s.metrics.refreshEvent('revoked', 'admin', familiesRevoked)
    await propagated(s)
    return reply.code(204).header('cache-control', 'no-store').send()
  })

  methodNotAllowed(app, '/admin/clients', ['GET', 'POST'])
  methodNotAllowed(app, '/admin/clients/:id', ['GET', 'PATCH', 'DELETE'])
  for (const url of ['/admin/clients/:id/secret', '/admin/clients/:id/disable', '/admin/clients/:id/enable']) methodNotAllowed(app, url, ['POST'])
}
