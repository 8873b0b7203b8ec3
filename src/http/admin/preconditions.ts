// The admin API's concurrency and retry headers (docs/admin-users.md "Admin API conventions"),
// shared by every admin area that has versioned objects (users, clients):
//  - ETag: strong, `"v<N>"` from the object's version, on every read, create and update.
//  - If-Match: required on every update (missing → 428); a list of ETags is accepted, `*` and weak
//    ETags are not (428 and 412: `*` would skip the check, a weak ETag never matches strongly).
//    Nothing here reads the version: the use case's UPDATE carries `where version in (…)` and sets
//    `version = version + 1`, so the check and the write are one statement (`versionMismatch`).
//  - Idempotency-Key: on creates; the same key with the same request replays the stored response
//    with `Idempotency-Replayed: true`, with another request → 422 (`admin/idempotency.ts`).
import { createHash } from 'node:crypto'
import type { FastifyReply, FastifyRequest } from 'fastify'
import type { IdempotencyRequest, IdempotentResult, StoredResponse } from '../../admin/idempotency.js'
import { InputError, OAuthError } from '../../errors.js'

/** The strong ETag of a version. */
export function etagOf(version: number): string {
  return `"v${version}"`
}

const ETAG = /^"v([1-9]\d{0,9})"$/

/**
 * The versions an update may apply to, from `If-Match`: 428 when it is missing (or `*`), 412 when
 * no entry can match (a weak or foreign ETag). The caller's UPDATE checks them atomically.
 */
export function ifMatchVersions(req: FastifyRequest): number[] {
  const header = req.headers['if-match']
  if (header === undefined || header.trim() === '') {
    throw new OAuthError('invalid_request', 'this update needs an If-Match header with the ETag of the object as last read (GET it first)').withStatus(428)
  }
  const entries = header.split(',').map((e) => e.trim()).filter((e) => e !== '')
  if (entries.includes('*')) {
    throw new OAuthError('invalid_request', 'If-Match: * is not accepted: send the ETag of the object as last read, so that no concurrent change is overwritten').withStatus(428)
  }
  const versions = entries.flatMap((e) => {
    const m = ETAG.exec(e)
    return m && Number(m[1]) <= 2147483647 ? [Number(m[1])] : []
  })
  if (versions.length === 0 || entries.length > 16) throw versionMismatch()
  return versions
}

/** 412: the object changed since the caller read it (or the ETag was never ours). */
export function versionMismatch(): OAuthError {
  return new OAuthError('invalid_request', 'the object was changed since it was read (If-Match does not match its ETag): GET it again, then retry').withStatus(412)
}

const KEY = /^[\x20-\x7E]{1,255}$/

/** JSON with object members sorted, so that two equal bodies have one fingerprint. */
export function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`
  if (value !== null && typeof value === 'object') {
    const obj = value as Record<string, unknown>
    return `{${Object.keys(obj).sort().filter((k) => obj[k] !== undefined).map((k) => `${JSON.stringify(k)}:${canonicalJson(obj[k])}`).join(',')}}`
  }
  return JSON.stringify(value) ?? 'null'
}

/**
 * The Idempotency-Key of a create (undefined without one), keyed per acting client, with the
 * request's fingerprint: SHA-256 of method, path and canonical JSON body. Body members named in
 * `secretMembers` (a password) count by presence only: no hash of a secret is ever stored.
 */
export function idempotencyOf(req: FastifyRequest, actor: string, secretMembers: readonly string[] = []): IdempotencyRequest | undefined {
  const key = req.headers['idempotency-key']
  if (key === undefined) return undefined
  if (Array.isArray(key) || !KEY.test(key)) throw new InputError('the Idempotency-Key header must be 1 to 255 printable ASCII characters')
  let body = req.body
  if (body !== null && typeof body === 'object' && !Array.isArray(body)) {
    const copy: Record<string, unknown> = { ...(body as Record<string, unknown>) }
    for (const m of secretMembers) if (copy[m] !== undefined) copy[m] = { present: true }
    body = copy
  }
  const fingerprint = createHash('sha256').update(`${req.method}\n${req.url.split('?')[0]}\n${canonicalJson(body ?? null)}`).digest('hex')
  return { actor, key, fingerprint }
}

/**
 * Answers a create: the live response of a fresh one (which may hold a secret the stored one does
 * not), or the stored response of a replay with `Idempotency-Replayed: true`.
 */
export function sendCreated<T>(reply: FastifyReply, r: IdempotentResult<T>, live: (result: T) => StoredResponse): FastifyReply {
  const res = r.replayed ? r.response : live(r.result)
  reply.code(res.status).header('cache-control', 'no-store')
  for (const [name, value] of Object.entries(res.headers)) reply.header(name, value)
  if (r.replayed) reply.header('idempotency-replayed', 'true')
  return reply.send(res.body)
}
