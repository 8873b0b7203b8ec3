import { calculateJwkThumbprint, exportJWK, generateKeyPair, type JWK } from 'jose'
import { sql } from 'kysely'
import type { SigningAlg } from '../config.js'
import type { Db, Executor, KeyState, SigningKeyRow } from '../db/schema.js'
import { seal, type Kek } from './kek.js'

/** A signing key as listed to operators (never the private part). */
export interface KeyInfo {
  kid: string
  alg: string
  state: KeyState
  createdAt: Date
  activatedAt: Date | null
  retiredAt: Date | null
  revokedAt: Date | null
}

export function toKeyInfo(row: Omit<SigningKeyRow, 'private_key_enc' | 'public_jwk' | 'kek_id'>): KeyInfo {
  return { kid: row.kid, alg: row.alg, state: row.state, createdAt: row.created_at, activatedAt: row.activated_at, retiredAt: row.retired_at, revokedAt: row.revoked_at }
}

/** Generates a key pair for `alg`; kid is its RFC 7638 thumbprint. */
export async function generateSigningKey(alg: SigningAlg, kek: Kek) {
  const { publicKey, privateKey } = await generateKeyPair(alg, { extractable: true, ...(alg === 'RS256' || alg === 'PS256' ? { modulusLength: 2048 } : {}) })
  const publicJwk = await exportJWK(publicKey)
  const kid = await calculateJwkThumbprint(publicJwk, 'sha256')
  const privateJwk: JWK = await exportJWK(privateKey)
  return {
    kid,
    alg,
    publicJwk: { ...publicJwk, kid, alg, use: 'sig' } as JWK,
    privateKeyEnc: seal(kek, Buffer.from(JSON.stringify(privateJwk), 'utf8'), kid),
    kekId: kek.id,
  }
}

// One lock id for every key-set change: instances that rotate at once queue up behind it.
const KEYS_LOCK = sql`pg_advisory_xact_lock(7351003611)`

/** Every key with its state, newest first. */
export async function listKeys(db: Executor): Promise<KeyInfo[]> {
  const rows = await db.selectFrom('signing_key').select(['kid', 'alg', 'state', 'created_at', 'activated_at', 'retired_at', 'revoked_at']).orderBy('created_at', 'desc').execute()
  return rows.map(toKeyInfo)
}

/** The keys the keyring needs: all but revoked ones. */
export async function loadLiveKeys(db: Executor): Promise<SigningKeyRow[]> {
  return db.selectFrom('signing_key').selectAll().where('state', '!=', 'revoked').orderBy('created_at', 'desc').execute()
}

/**
 * Makes sure one active key exists, creating it if not. Safe from many instances at once:
 * the advisory lock serialises them and the second finds the first one's key.
 */
export async function ensureActiveKey(db: Db, alg: SigningAlg, kek: Kek): Promise<{ created: string | undefined }> {
  const existing = await db.selectFrom('signing_key').select('kid').where('state', '=', 'active').executeTakeFirst()
  if (existing) return { created: undefined }
  const fresh = await generateSigningKey(alg, kek) // outside the lock: RSA generation is slow
  return db.transaction().execute(async (trx) => {
    await sql`select ${KEYS_LOCK}`.execute(trx)
    const active = await trx.selectFrom('signing_key').select('kid').where('state', '=', 'active').executeTakeFirst()
    if (active) return { created: undefined }
    await insertKey(trx, fresh, 'active')
    return { created: fresh.kid }
  })
}

/** Makes a new active key; the previous active key is retired (still published, still verifies). */
export async function rotateKey(db: Db, alg: SigningAlg, kek: Kek): Promise<{ kid: string; retired: string[] }> {
  const fresh = await generateSigningKey(alg, kek)
  return db.transaction().execute(async (trx) => {
    await sql`select ${KEYS_LOCK}`.execute(trx)
    const retired = await trx
      .updateTable('signing_key')
      .set({ state: 'retired', retired_at: sql`now()` })
      .where('state', '=', 'active')
      .returning('kid')
      .execute()
    await insertKey(trx, fresh, 'active')
    return { kid: fresh.kid, retired: retired.map((r) => r.kid) }
  })
}

async function insertKey(db: Executor, key: Awaited<ReturnType<typeof generateSigningKey>>, state: KeyState) {
  await db
    .insertInto('signing_key')
    .values({
      kid: key.kid,
      alg: key.alg,
      state,
      public_jwk: JSON.stringify(key.publicJwk),
      private_key_enc: key.privateKeyEnc,
      kek_id: key.kekId,
      activated_at: state === 'active' ? sql<Date>`now()` as unknown as Date : null,
    })
    .execute()
}
