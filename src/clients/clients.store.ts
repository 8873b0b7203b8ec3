import { randomBytes } from 'node:crypto'
import { sql } from 'kysely'
import type { ClientRow, Executor, Trx } from '../db/schema.js'
import type { GrantType } from '../grants/grant-types.js'
import { newClientSecret, type Client, type NewClient } from './client.js'

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

/** Creates a client; the secret is returned once and only its hash is stored. */
export async function createClient(db: Executor, input: NewClient): Promise<{ client: Client; secret: string | undefined }> {
  const id = input.id ?? `c_${randomBytes(12).toString('base64url')}`
  const credential = input.isPublic ? undefined : newClientSecret()
  const row = await db
    .insertInto('client')
    .values({
      id,
      name: input.name,
      secret_hash: credential?.hash ?? null,
      grant_types: input.grantTypes,
      scopes: input.scopes,
      audience: input.audience ?? [],
      refresh_delivery: input.refreshDelivery ?? (input.isPublic && (input.allowedOrigins?.length ?? 0) > 0 ? 'cookie' : 'body'),
      allowed_origins: input.allowedOrigins ?? [],
    })
    .returningAll()
    .executeTakeFirstOrThrow()
  return { client: toClient(row), secret: credential?.secret }
}

export async function findClient(db: Executor, id: string): Promise<Client | undefined> {
  const row = await db.selectFrom('client').selectAll().where('id', '=', id).executeTakeFirst()
  return row && toClient(row)
}

export async function listClients(db: Executor): Promise<Client[]> {
  const rows = await db.selectFrom('client').selectAll().orderBy('created_at').execute()
  return rows.map(toClient)
}

/**
 * Marks a client disabled (its first disable time is kept): whether this call disabled it (false:
 * it was disabled already), or undefined when there is no such client.
 */
export async function markClientDisabled(trx: Trx, id: string): Promise<{ changed: boolean } | undefined> {
  return trx
    .updateTable('client')
    .set({ disabled_at: sql`coalesce(disabled_at, now())`, updated_at: sql`now()` })
    .where('id', '=', id)
    // now() is the transaction's start: equal only when this statement set it.
    .returning(sql<boolean>`disabled_at = now()`.as('changed'))
    .executeTakeFirst()
}

/** Every origin any enabled client allows, for CORS preflights. */
export async function allAllowedOrigins(db: Executor): Promise<string[]> {
  const rows = await db.selectFrom('client').select(sql<string>`unnest(allowed_origins)`.as('origin')).where('disabled_at', 'is', null).execute()
  return [...new Set(rows.map((r) => r.origin))]
}
