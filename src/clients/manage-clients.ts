// Registering, changing, re-keying and deleting clients: the use cases behind the admin API
// (src/http/admin/clients.route.ts) and the CLI (src/cli/clients.ts). Each owns its transaction;
// the change, the revocations it implies and its audit event commit together or not at all. The
// client row's trigger (migration 0012) announces every change to the other instances.
import { randomBytes } from 'node:crypto'
import { recordEvent } from '../audit/audit.store.js'
import { actorDetail, type AuditContext } from '../audit/context.js'
import type { SigningAlg } from '../config.js'
import type { Db, Executor, Trx } from '../db/schema.js'
import { InputError } from '../errors.js'
import { findKeyIn } from '../keys/keys.store.js'
import { revokeFamilies } from '../tokens/refresh-tokens.store.js'
import { newClientSecret, type Client } from './client.js'
import { changedFields, mergeClientSettings, settingsOf, type ClientSettings, type FieldNames } from './client-settings.js'
import { deleteClientRow, insertClient, lockClient, replaceClientSecret, updateClientSettings } from './clients.store.js'
import type { ClientChange } from './disable-client.js'

/** The longest overlap a rotation may ask for (30 days; CLIENT_SECRET_OVERLAP_SECONDS has the same bound). */
export const MAX_SECRET_OVERLAP_SECONDS = 30 * 86_400

/**
 * Refuses an ID-token algorithm no key line signs with here: the configured lines, or a line
 * started by command (`tessera keys rotate --alg A --now`).
 */
export async function requireIdTokenLine(db: Executor, lines: readonly SigningAlg[], alg: SigningAlg, names: FieldNames): Promise<void> {
  if (lines.includes(alg) || (await findKeyIn(db, 'active', alg))) return
  const message = `no ${alg} key line signs here: start one with \`tessera keys rotate --alg ${alg} --now\`, or pick one of ${lines.join(', ')}`
  throw new InputError(names.prefix ? `${names.label('id_token_signed_response_alg')}: ${message}` : message)
}

export interface RegisterOptions {
  /** The key lines this deployment signs with (keyPolicy(config).lines). */
  readonly lines: readonly SigningAlg[]
  readonly names: FieldNames
  readonly ctx: AuditContext
}

/**
 * Registers a client with checked settings (client-settings.ts), audited (`client.created`), in
 * the caller's transaction (the admin API's holds its Idempotency-Key too). The secret of a
 * confidential client is returned this once; only its SHA-256 is stored.
 */
export async function registerClientIn(trx: Trx, settings: ClientSettings, o: RegisterOptions): Promise<{ client: Client; secret: string | undefined }> {
  await requireIdTokenLine(trx, o.lines, settings.idTokenSignedResponseAlg, o.names)
  const id = `c_${randomBytes(12).toString('base64url')}`
  const credential = settings.isPublic ? undefined : newClientSecret()
  const client = await insertClient(trx, id, settings, credential?.hash ?? null)
  await recordEvent(trx, {
    type: 'client.created',
    clientId: id,
    ...o.ctx,
    detail: { ...actorDetail(o.ctx.actor), name: settings.name, type: settings.isPublic ? 'public' : 'confidential', grant_types: settings.grantTypes, scopes: settings.scopes },
  })
  return { client, secret: credential?.secret }
}

/** `registerClientIn`, in a transaction of its own (the CLI). */
export async function registerClient(db: Db, settings: ClientSettings, o: RegisterOptions): Promise<{ client: Client; secret: string | undefined }> {
  return db.transaction().execute((trx) => registerClientIn(trx, settings, o))
}

/**
 * Changes a client's settings (`patch` over the current ones, checked together), audited
 * (`client.updated`, naming the changed fields). `expectedVersions`: refused (`stale`) when the
 * client's version is no longer that. A patch that changes nothing writes nothing.
 */
export async function updateClient(db: Db, id: string, patch: Partial<ClientSettings>, o: { lines: readonly SigningAlg[]; names: FieldNames; ctx: AuditContext; expectedVersions?: readonly number[] | undefined }): Promise<ClientChange<{ client: Client; changed: string[] }>> {
  return db.transaction().execute(async (trx) => {
    const current = await lockClient(trx, id)
    if (!current) return { kind: 'not_found' as const }
    if (o.expectedVersions !== undefined && !o.expectedVersions.includes(current.version)) return { kind: 'stale' as const, version: current.version }
    const next = mergeClientSettings(current, patch, o.names)
    if (next.idTokenSignedResponseAlg !== current.idTokenSignedResponseAlg) await requireIdTokenLine(trx, o.lines, next.idTokenSignedResponseAlg, o.names)
    const changed = changedFields(settingsOf(current), next)
    if (changed.length === 0) return { kind: 'done' as const, value: { client: current, changed } }
    const client = await updateClientSettings(trx, id, next, current.version)
    if (!client) return { kind: 'stale' as const, version: current.version }
    await recordEvent(trx, { type: 'client.updated', clientId: id, ...o.ctx, detail: { ...actorDetail(o.ctx.actor), changed } })
    return { kind: 'done' as const, value: { client, changed } }
  })
}

export interface RotateOptions {
  /** How long the replaced secret keeps working (0: it stops at once). */
  readonly overlapSeconds: number
  /** Now, by the injected clock: the replaced secret's end is this plus the overlap. */
  readonly nowMs: number
  readonly ctx: AuditContext
  readonly expectedVersions?: readonly number[] | undefined
}

/**
 * Gives a confidential client a new secret, returned this once (only its SHA-256 is stored),
 * audited (`client.secret_rotated`). The replaced secret keeps authenticating until
 * `previousExpiresAt` (null: not at all); a secret replaced by an earlier rotation stops now.
 */
export async function rotateClientSecret(db: Db, id: string, o: RotateOptions): Promise<ClientChange<{ client: Client; secret: string; previousExpiresAt: Date | null }>> {
  if (!Number.isInteger(o.overlapSeconds) || o.overlapSeconds < 0 || o.overlapSeconds > MAX_SECRET_OVERLAP_SECONDS) {
    throw new InputError(`the overlap must be a whole number of seconds from 0 to ${MAX_SECRET_OVERLAP_SECONDS}`)
  }
  return db.transaction().execute(async (trx) => {
    const current = await lockClient(trx, id)
    if (!current) return { kind: 'not_found' as const }
    if (o.expectedVersions !== undefined && !o.expectedVersions.includes(current.version)) return { kind: 'stale' as const, version: current.version }
    if (current.isPublic) throw new InputError('a public client has no secret to rotate')
    const { secret, hash } = newClientSecret()
    const previousExpiresAt = o.overlapSeconds > 0 ? new Date(o.nowMs + o.overlapSeconds * 1000) : null
    const client = await replaceClientSecret(trx, id, hash, previousExpiresAt, current.version)
    if (!client) return { kind: 'stale' as const, version: current.version }
    await recordEvent(trx, {
      type: 'client.secret_rotated',
      clientId: id,
      ...o.ctx,
      detail: { ...actorDetail(o.ctx.actor), overlap_seconds: o.overlapSeconds, previous_secret_expires_at: previousExpiresAt?.toISOString() ?? null },
    })
    return { kind: 'done' as const, value: { client, secret, previousExpiresAt } }
  })
}

/**
 * Deletes a client: revokes every refresh-token family of it (audited one by one, reason
 * `client_deleted`), then the row with what hangs on it (families, codes, consents, SSO links);
 * the audit trail keeps its rows and the `client.deleted` event. Its access tokens are refused as
 * soon as an instance applies the change.
 */
export async function deleteClient(db: Db, id: string, o: { ctx: AuditContext; expectedVersions?: readonly number[] | undefined }): Promise<ClientChange<{ familiesRevoked: number }>> {
  return db.transaction().execute(async (trx) => {
    const current = await lockClient(trx, id)
    if (!current) return { kind: 'not_found' as const }
    if (o.expectedVersions !== undefined && !o.expectedVersions.includes(current.version)) return { kind: 'stale' as const, version: current.version }
    const revoked = await revokeFamilies(trx, { clientId: id }, 'client_deleted', o.ctx)
    // The row is locked: its version cannot have moved. Throwing rolls the revocations back too.
    if (!(await deleteClientRow(trx, id, current.version))) throw new Error(`client ${id} changed under its row lock`)
    await recordEvent(trx, { type: 'client.deleted', clientId: id, ...o.ctx, detail: { ...actorDetail(o.ctx.actor), name: current.name, families_revoked: revoked.length } })
    return { kind: 'done' as const, value: { familiesRevoked: revoked.length } }
  })
}
