import { sql } from 'kysely'
import type { Executor, KeyState, SigningKeyRow, Trx } from '../db/schema.js'
import { DESTROYED, type PreparedKey } from './key-material.js'

// SQL of the signing_key table. Every write takes a transaction: key-set changes run under the
// key-set lock (lifecycle.ts `withKeysLock`), and every write bumps the row's version, which is
// how every instance notices a change with one tiny query.

const NEXT_VERSION = sql<string>`nextval('signing_key_version_seq')`

/** The columns an operator sees: state and dates, never key material. */
export type KeyListRow = Omit<SigningKeyRow, 'private_key_enc' | 'public_jwk' | 'version'>

/**
 * Takes the key-set lock for the rest of the transaction: one lock id for every key-set change,
 * so instances and commands that change keys at once queue up behind it.
 */
export async function lockKeySet(trx: Trx): Promise<void> {
  await sql`select pg_advisory_xact_lock(7351003611)`.execute(trx)
}

/** Every key with its state and dates, newest first. */
export async function listKeys(db: Executor): Promise<KeyListRow[]> {
  return db
    .selectFrom('signing_key')
    .select(['kid', 'alg', 'state', 'kek_id', 'created_at', 'activate_at', 'activated_at', 'retired_at', 'remove_at', 'removed_at', 'revoked_at', 'revoked_reason'])
    .orderBy('created_at', 'desc')
    .orderBy('kid')
    .execute()
}

/** The published keys (pending, active, retired): what the keyring and the schedule need. */
export async function loadLiveKeys(db: Executor): Promise<SigningKeyRow[]> {
  return db.selectFrom('signing_key').selectAll().where('state', 'in', ['pending', 'active', 'retired']).orderBy('created_at', 'desc').orderBy('kid').execute()
}

/** A value that changes whenever any key row changes: one tiny query for every instance's poll. */
export async function keySetVersion(db: Executor): Promise<string> {
  const r = await sql<{ v: string }>`select coalesce(max(version), 0)::text || ':' || count(*)::text as v from signing_key`.execute(db)
  return r.rows[0]!.v
}

/** One key's state and algorithm. */
export async function findKey(db: Executor, kid: string): Promise<{ kid: string; state: KeyState; alg: string } | undefined> {
  return db.selectFrom('signing_key').select(['kid', 'state', 'alg']).where('kid', '=', kid).executeTakeFirst()
}

/** A line's key in `state` (each line, one per algorithm, has at most one pending and one active key). */
export async function findKeyIn(db: Executor, state: 'pending' | 'active', alg: string): Promise<Pick<SigningKeyRow, 'kid' | 'alg' | 'created_at' | 'activate_at' | 'kek_id' | 'private_key_enc'> | undefined> {
  return db.selectFrom('signing_key').select(['kid', 'alg', 'created_at', 'activate_at', 'kek_id', 'private_key_enc']).where('state', '=', state).where('alg', '=', alg).executeTakeFirst()
}

/** Stores a key in `state` at `at`; only pending and active keys keep their private part. */
export async function insertKey(trx: Trx, key: PreparedKey, state: KeyState, at: Date, dates: { activateAt?: Date; removeAt?: Date } = {}): Promise<void> {
  await trx
    .insertInto('signing_key')
    .values({
      kid: key.kid,
      alg: key.alg,
      state,
      public_jwk: JSON.stringify(key.publicJwk),
      private_key_enc: state === 'pending' || state === 'active' ? key.privateKeyEnc : DESTROYED,
      kek_id: key.kekId,
      created_at: at,
      activated_at: state === 'active' ? at : null,
      retired_at: state === 'retired' ? at : null,
      activate_at: dates.activateAt ?? null,
      remove_at: dates.removeAt ?? null,
    })
    .execute()
}

/** Retires a line's active key (it stays published until `removeAt`); returns its kid, if there was one. */
export async function retireActiveKey(trx: Trx, alg: string, at: Date, removeAt: Date): Promise<string[]> {
  const rows = await trx
    .updateTable('signing_key')
    .set({ state: 'retired', retired_at: at, remove_at: removeAt, private_key_enc: DESTROYED, version: NEXT_VERSION })
    .where('state', '=', 'active')
    .where('alg', '=', alg)
    .returning('kid')
    .execute()
  return rows.map((r) => r.kid)
}

export async function activateKey(trx: Trx, kid: string, at: Date): Promise<void> {
  await trx.updateTable('signing_key').set({ state: 'active', activated_at: at, version: NEXT_VERSION }).where('kid', '=', kid).execute()
}

/** Takes a key out of the JWKS (a retired key after its retention, or a pending key withdrawn). */
export async function removeKey(trx: Trx, kid: string, at: Date): Promise<void> {
  await trx.updateTable('signing_key').set({ state: 'removed', removed_at: at, private_key_enc: DESTROYED, version: NEXT_VERSION }).where('kid', '=', kid).execute()
}

export async function markKeyRevoked(trx: Trx, kid: string, at: Date, reason: string | null): Promise<void> {
  await trx.updateTable('signing_key').set({ state: 'revoked', revoked_at: at, revoked_reason: reason, private_key_enc: DESTROYED, version: NEXT_VERSION }).where('kid', '=', kid).execute()
}

/** Moves a pending key's activation time. */
export async function setActivateAt(trx: Trx, kid: string, activateAt: Date): Promise<void> {
  await trx.updateTable('signing_key').set({ activate_at: activateAt, version: NEXT_VERSION }).where('kid', '=', kid).execute()
}

/** Every key's sealed private part and the KEK it names (for a rewrap). */
export async function sealedKeys(trx: Trx): Promise<Pick<SigningKeyRow, 'kid' | 'kek_id' | 'private_key_enc'>[]> {
  return trx.selectFrom('signing_key').select(['kid', 'kek_id', 'private_key_enc']).execute()
}

export async function storeResealedKey(trx: Trx, kid: string, sealed: Buffer, kekId: string): Promise<void> {
  await trx.updateTable('signing_key').set({ private_key_enc: sealed, kek_id: kekId, version: NEXT_VERSION }).where('kid', '=', kid).execute()
}
