import type { FastifyInstance, FastifyRequest } from 'fastify'
import { OAuthError } from '../../errors.js'
import { prepareImportedKey } from '../../keys/key-material.js'
import { parseImportState, parseSigningAlg } from '../../keys/key-params.js'
import { importedJson, keyInfoJson, retiredLineJson, revokedJson, rewrappedJson, rotatedJson, scheduledJson } from '../../keys/key-view.js'
import { listKeys } from '../../keys/keys.store.js'
import { importKey, retireLine, revokeKey, rewrapKeys, rotateKey, scheduleRotation } from '../../keys/lifecycle.js'
import { awaitPropagation, type PropagationReport } from '../../propagation/await-propagation.js'
import type { Services } from '../../services.js'
import { methodNotAllowed } from '../not-allowed.js'
import { requireAdmin } from './guard.js'
import { BEARER, errorResponses } from '../schemas/common.js'
import { AlgParams, ImportKeyRequest, ImportKeyResponse, KeyList, KidParams, RetireLineResponse, RevokeKeyRequest, RevokeKeyResponse, RewrapResponse, RotateRequest, RotateResponse } from '../schemas/admin.js'

const KID = /^[A-Za-z0-9_-]{1,128}$/

/** The JSON object body of an admin call (an absent body is `{}`); anything else is `invalid_request`. */
function body(req: FastifyRequest): Record<string, unknown> {
  const b = req.body
  if (b === undefined || b === null) return {}
  if (typeof b !== 'object' || Array.isArray(b)) throw new OAuthError('invalid_request', 'the body must be a JSON object')
  return b as Record<string, unknown>
}

/**
 * After a change: applies it to this instance, then waits until every live instance has
 * (README "Changes reach every instance"); the `propagation` member of the answer.
 */
async function propagated(s: Services): Promise<PropagationReport> {
  await s.changes.applyNow()
  return awaitPropagation(s.db, { clock: s.clock, waitSeconds: s.config.propagationWaitSeconds, staleSeconds: s.config.instanceStaleSeconds })
}

/**
 * The signing-key admin API (README "Signing keys"): list, rotate (scheduled, or `immediate`),
 * emergency revoke, import and KEK rewrap. Every call needs an admin token; every change is
 * applied to this instance's keyring at once, and the answer waits for the other instances.
 */
export function adminKeysRoute(app: FastifyInstance, s: Services): void {
  const opts = () => ({ keks: s.keyring.keks, policy: s.keyring.policy, nowMs: s.clock.nowMs() })

  app.get('/admin/keys', {
    schema: {
      summary: 'List the signing keys',
      description: 'Every key’s state and dates; never key material.',
      tags: ['admin'],
      security: BEARER,
      response: { 200: KeyList, ...errorResponses(401, 403, 503) },
    },
  }, async (req, reply) => {
    await requireAdmin(s, req)
    const keys = await listKeys(s.db)
    return reply.header('cache-control', 'no-store').send({ keys: keys.map(keyInfoJson) })
  })

  app.post('/admin/keys/rotate', {
    schema: {
      summary: 'Rotate a key line',
      description: 'Schedules the next key (or, with `immediate`, activates it now); waits for the other instances.',
      tags: ['admin'],
      security: BEARER,
      documentOnly: { body: RotateRequest },
      response: { 200: RotateResponse, ...errorResponses(400, 401, 403, 503) },
    },
  }, async (req, reply) => {
    const admin = await requireAdmin(s, req)
    const b = body(req)
    // alg names the key line; without it, the SIGNING_ALG line (README "Key lines").
    const alg = parseSigningAlg(b.alg, 'alg')
    if (b.immediate !== undefined && typeof b.immediate !== 'boolean') throw new OAuthError('invalid_request', 'immediate must be true or false')
    const out = b.immediate === true ? rotatedJson(await rotateKey(s.db, opts(), alg)) : scheduledJson(await scheduleRotation(s.db, opts(), alg))
    req.log.warn({ admin: admin.client_id, ...out }, 'signing key rotation')
    await s.keyring.reload()
    return reply.header('cache-control', 'no-store').send({ ...out, propagation: await propagated(s) })
  })

  app.post<{ Params: { kid: string } }>('/admin/keys/:kid/revoke', {
    schema: {
      summary: 'Revoke a signing key (emergency)',
      description: 'Tokens it signed stop verifying; a successor signs at once. Audited.',
      tags: ['admin'],
      security: BEARER,
      documentOnly: { params: KidParams, body: RevokeKeyRequest },
      response: { 200: RevokeKeyResponse, ...errorResponses(400, 401, 403, 404, 503) },
    },
  }, async (req, reply) => {
    const admin = await requireAdmin(s, req)
    const { kid } = req.params
    if (!KID.test(kid)) throw new OAuthError('invalid_request', 'no such key').withStatus(404)
    const b = body(req)
    if (b.reason !== undefined && (typeof b.reason !== 'string' || b.reason.length > 200)) throw new OAuthError('invalid_request', 'reason must be a string of at most 200 characters')
    const r = await revokeKey(s.db, opts(), kid, { reason: (b.reason as string | undefined) ?? 'admin api', actor: { via: 'admin_api', clientId: admin.client_id } })
    if (!r.found) throw new OAuthError('invalid_request', 'no such key').withStatus(404)
    if (r.revoked) s.metrics.keyRevoked()
    await s.keyring.reload()
    req.log.warn({ admin: admin.client_id, kid, previousState: r.previousState, successor: r.successor, successorPrepublished: r.successorPrepublished }, 'signing key revoked')
    return reply.header('cache-control', 'no-store').send({ ...revokedJson(kid, r), propagation: await propagated(s) })
  })

  app.post('/admin/keys/import', {
    schema: {
      summary: 'Import a signing key',
      tags: ['admin'],
      security: BEARER,
      documentOnly: { body: ImportKeyRequest },
      response: { 201: ImportKeyResponse, ...errorResponses(400, 401, 403, 503) },
    },
  }, async (req, reply) => {
    const admin = await requireAdmin(s, req)
    const b = body(req)
    const state = parseImportState(b.state, 'state')
    if ((b.pem === undefined) === (b.jwk === undefined)) throw new OAuthError('invalid_request', 'send exactly one of pem and jwk')
    if (b.pem !== undefined && typeof b.pem !== 'string') throw new OAuthError('invalid_request', 'pem must be a string')
    const alg = parseSigningAlg(b.alg, 'alg')
    const prepared = await prepareImportedKey({ pem: b.pem as string | undefined, jwk: b.jwk }, alg, s.keyring.keks.current)
    const r = await importKey(s.db, opts(), prepared, state)
    await s.keyring.reload()
    req.log.warn({ admin: admin.client_id, kid: r.kid, alg: r.alg, state: r.state }, 'signing key imported')
    return reply.code(201).header('cache-control', 'no-store').send({ ...importedJson(r), propagation: await propagated(s) })
  })

  app.post<{ Params: { alg: string } }>('/admin/keys/lines/:alg/retire', {
    schema: {
      summary: 'Retire a key line',
      description: 'Stops signing with the line’s algorithm; its keys stay published until their tokens expire. Audited.',
      tags: ['admin'],
      security: BEARER,
      documentOnly: { params: AlgParams },
      response: { 200: RetireLineResponse, ...errorResponses(400, 401, 403, 503) },
    },
  }, async (req, reply) => {
    const admin = await requireAdmin(s, req)
    const alg = parseSigningAlg(req.params.alg, 'alg')!
    const r = await retireLine(s.db, opts(), alg, { actor: { via: 'admin_api', clientId: admin.client_id } })
    await s.keyring.reload()
    req.log.warn({ admin: admin.client_id, ...r }, 'signing key line retired')
    return reply.header('cache-control', 'no-store').send({ ...retiredLineJson(r), propagation: await propagated(s) })
  })

  app.post('/admin/keys/rewrap', {
    schema: {
      summary: 'Re-seal the private keys under the current KEK',
      tags: ['admin'],
      security: BEARER,
      response: { 200: RewrapResponse, ...errorResponses(401, 403, 503) },
    },
  }, async (req, reply) => {
    const admin = await requireAdmin(s, req)
    const r = await rewrapKeys(s.db, s.keyring.keks)
    req.log.warn({ admin: admin.client_id, kekId: r.kekId, rewrapped: r.rewrapped.length, failed: r.failed }, 'signing keys rewrapped')
    await s.keyring.reload()
    return reply.header('cache-control', 'no-store').send({ ...rewrappedJson(r), propagation: await propagated(s) })
  })

  methodNotAllowed(app, '/admin/keys', ['GET'])
  for (const url of ['/admin/keys/rotate', '/admin/keys/:kid/revoke', '/admin/keys/lines/:alg/retire', '/admin/keys/import', '/admin/keys/rewrap']) methodNotAllowed(app, url, ['POST'])
}
