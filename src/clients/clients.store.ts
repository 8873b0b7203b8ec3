import { createHash, randomBytes, timingSafeEqual } from 'node:crypto'
import { sql } from 'kysely'
import type { ClientRow, Db, Executor } from '../db/schema.js'

export const GRANT_TYPES = ['client_credentials', 'refresh_token', 'password'] as const
export type GrantType = (typeof GRANT_TYPES)[number]

/** A registered OAuth client. */
export interface Client {
  id: string
  name: string
  /** True for public clients (no secret: browser and native apps). */
  isPublic: boolean
  secretHash: Buffer | null
  grantTypes: GrantType[]
  scopes: string[]
  audience: string[]
  refreshDelivery: 'body' | 'cookie'
  allowedOrigins: string[]
  disabled: boolean
  createdAt: Date
}

function toClient(row: ClientRow): Client {
  return {
    id: row.id,
    name: row.name,
    isPublic: row.secret_hash === null,
    secretHash: row.secret_hash ? Buffer.from(row.secret_hash) : null,
    grantTypes: row.grant_types as GrantType[],
    scopes: row.scopes,
    audience: row.audience,
    refreshDelivery: row.refresh_delivery,
    allowedOrigins: row.allowed_origins,
    disabled: row.disabled_at !== null,
    createdAt: row.created_at,
  }
}

export const CLIENT_SECRET_PREFIX = 'tessera_cs_'
const sha256 = (s: string) => createHash('sha256').update(s, 'utf8').digest()
const DECOY_HASH = sha256('decoy')

/** Constant-time check of a presented secret against the stored SHA-256 (or a decoy). */
export function secretMatches(client: Client | undefined, presented: string): boolean {
  const expected = client?.secretHash ?? DECOY_HASH
  const ok = timingSafeEqual(sha256(presented), expected)
  return ok && client?.secretHash != null
}

export interface NewClient {
  name: string
  isPublic: boolean
  grantTypes: GrantType[]
  scopes: string[]
  audience?: string[]
  refreshDelivery?: 'body' | 'cookie'
  allowedOrigins?: string[]
  id?: string
}

/** Creates a client; the secret is returned once and only its hash is stored. */
export async function createClient(db: Executor, input: NewClient): Promise<{ client: Client; secret: string | undefined }> {
  const id = input.id ?? `c_${randomBytes(12).toString('base64url')}`
  // 256 bits from the CSPRNG; a prefix lets secret scanners recognise leaked ones.
  const secret = input.isPublic ? undefined : `${CLIENT_SECRET_PREFIX}${randomBytes(32).toString('base64url')}`
  const row = await db
    .insertInto('client')
    .values({
      id,
      name: input.name,
      secret_hash: secret ? sha256(secret) : null,
      grant_types: input.grantTypes,
      scopes: input.scopes,
      audience: input.audience ?? [],
      refresh_delivery: input.refreshDelivery ?? (input.isPublic && (input.allowedOrigins?.length ?? 0) > 0 ? 'cookie' : 'body'),
      allowed_origins: input.allowedOrigins ?? [],
    })
    .returningAll()
    .executeTakeFirstOrThrow()
  return { client: toClient(row), secret }
}

export async function findClient(db: Executor, id: string): Promise<Client | undefined> {
  const row = await db.selectFrom('client').selectAll().where('id', '=', id).executeTakeFirst()
  return row && toClient(row)
}

export async function listClients(db: Executor): Promise<Client[]> {
  const rows = await db.selectFrom('client').selectAll().orderBy('created_at').execute()
  return rows.map(toClient)
}

/** Disables a client and revokes its refresh-token families; false when unknown. */
export async function disableClient(db: Db, id: string): Promise<boolean> {
  return db.transaction().execute(async (trx) => {
    const row = await trx.updateTable('client').set({ disabled_at: sql`coalesce(disabled_at, now())`, updated_at: sql`now()` }).where('id', '=', id).returning('id').executeTakeFirst()
    if (!row) return false
    await trx.updateTable('refresh_token_family').set({ revoked_at: sql`now()`, revoked_reason: 'client_disabled' }).where('client_id', '=', id).where('revoked_at', 'is', null).execute()
    return true
  })
}

/** Every origin any client allows, for CORS preflights. */
export async function allAllowedOrigins(db: Executor): Promise<string[]> {
  const rows = await db.selectFrom('client').select(sql<string>`unnest(allowed_origins)`.as('origin')).where('disabled_at', 'is', null).execute()
  return [...new Set(rows.map((r) => r.origin))]
}
