import { createPrivateKey, createPublicKey, type KeyObject } from 'node:crypto'
import { calculateJwkThumbprint, exportJWK, generateKeyPair, type JWK } from 'jose'
import { sql } from 'kysely'
import { recordEvent } from '../audit/audit.store.js'
import { SIGNING_ALGS, type SigningAlg } from '../config.js'
import type { Db, Executor, KeyState, SigningKeyRow } from '../db/schema.js'
import { kekSet, openWith, seal, type Kek, type KekSet } from './kek.js'
import { activationTime, defaultKeyPolicy, prepublished, publicationTime, removalTime, standbyActivation, type KeyPolicy } from './policy.js'

/** A signing key as listed to operators (never the private part). */
export interface KeyInfo {
  kid: string
  alg: string
  state: KeyState
  kekId: string
  createdAt: Date
  activateAt: Date | null
  activatedAt: Date | null
  retiredAt: Date | null
  removeAt: Date | null
  removedAt: Date | null
  revokedAt: Date | null
  revokedReason: string | null
}

type InfoRow = Omit<SigningKeyRow, 'private_key_enc' | 'public_jwk' | 'version'>

export function toKeyInfo(row: InfoRow): KeyInfo {
  return {
    kid: row.kid,
    alg: row.alg,
    state: row.state,
    kekId: row.kek_id,
    createdAt: row.created_at,
    activateAt: row.activate_at,
    activatedAt: row.activated_at,
    retiredAt: row.retired_at,
    removeAt: row.remove_at,
    removedAt: row.removed_at,
    revokedAt: row.revoked_at,
    revokedReason: row.revoked_reason,
  }
}

/** The operator view of a key (CLI and admin API): state and dates, never key material. */
export function keyInfoJson(k: KeyInfo) {
  return {
    kid: k.kid,
    alg: k.alg,
    state: k.state,
    created_at: k.createdAt,
    activate_at: k.state === 'pending' ? k.activateAt : null,
    activated_at: k.activatedAt,
    retired_at: k.retiredAt,
    remove_at: k.state === 'retired' ? k.removeAt : null,
    removed_at: k.removedAt,
    revoked_at: k.revokedAt,
    revoked_reason: k.revokedReason,
    kek_id: k.kekId,
  }
}

/** A key ready to be stored: public JWK, sealed private JWK (empty for a public-only import). */
export interface PreparedKey {
  kid: string
  alg: SigningAlg
  publicJwk: JWK
  privateKeyEnc: Buffer
  kekId: string
}

/** Generates a key pair for `alg`; kid is its RFC 7638 thumbprint. */
export async function generateSigningKey(alg: SigningAlg, kek: Kek): Promise<PreparedKey> {
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

/** Raised for a key that cannot be imported; the message is safe to show (no key material). */
export class KeyImportError extends Error {}

/**
 * Prepares an existing key (PEM or JWK, private or public-only) for import: the algorithm is
 * `alg`, else the JWK's own `alg`, else the one its type implies (RSA → RS256). Only the key
 * types Tessera signs with are accepted: RSA ≥ 2048 bits, P-256, Ed25519.
 */
export async function prepareImportedKey(input: { pem?: string | undefined; jwk?: unknown }, alg: SigningAlg | undefined, kek: Kek): Promise<PreparedKey> {
  let privateKey: KeyObject | undefined
  let publicKey: KeyObject
  let jwkAlg: unknown
  try {
    if (input.pem !== undefined) {
      if (/-----BEGIN [A-Z ]*PRIVATE KEY-----/.test(input.pem)) {
        privateKey = createPrivateKey({ key: input.pem, format: 'pem' })
        publicKey = createPublicKey(privateKey)
      } else {
        publicKey = createPublicKey({ key: input.pem, format: 'pem' })
      }
    } else {
      const jwk = input.jwk
      if (typeof jwk !== 'object' || jwk === null || Array.isArray(jwk)) throw new KeyImportError('the JWK must be a JSON object')
      const j = jwk as Record<string, unknown>
      if (j.kty === 'oct') throw new KeyImportError('symmetric (oct) keys cannot sign tokens here')
      if (j.use !== undefined && j.use !== 'sig') throw new KeyImportError('the JWK is not a signing key (use is not "sig")')
      jwkAlg = j.alg
      if (typeof j.d === 'string') {
        privateKey = createPrivateKey({ key: j as never, format: 'jwk' })
        publicKey = createPublicKey(privateKey)
      } else {
        publicKey = createPublicKey({ key: j as never, format: 'jwk' })
      }
    }
  } catch (err) {
    if (err instanceof KeyImportError) throw err
    throw new KeyImportError('not a readable PEM or JWK key')
  }
  const details = publicKey.asymmetricKeyDetails ?? {}
  const type = publicKey.asymmetricKeyType
  const implied: SigningAlg | undefined = type === 'rsa' ? 'RS256' : type === 'ec' && details.namedCurve === 'prime256v1' ? 'ES256' : type === 'ed25519' ? 'EdDSA' : undefined
  if (!implied) throw new KeyImportError('unsupported key type: use RSA (2048 bits or more), EC P-256 or Ed25519')
  if (jwkAlg !== undefined && !(SIGNING_ALGS as readonly unknown[]).includes(jwkAlg)) throw new KeyImportError(`the JWK's alg must be one of ${SIGNING_ALGS.join(', ')}`)
  const chosen = alg ?? (jwkAlg as SigningAlg | undefined) ?? implied
  if (jwkAlg !== undefined && alg !== undefined && jwkAlg !== alg) throw new KeyImportError(`the JWK says alg ${String(jwkAlg)}, not ${alg}`)
  const fits = chosen === implied || (chosen === 'PS256' && implied === 'RS256')
  if (!fits) throw new KeyImportError(`a ${type === 'rsa' ? 'RSA' : type === 'ec' ? 'P-256' : 'Ed25519'} key cannot be used with ${chosen}`)
  if (type === 'rsa' && (details.modulusLength ?? 0) < 2048) throw new KeyImportError('RSA keys must have at least 2048 bits')

  const exported = await exportJWK(publicKey)
  const publicMembers: JWK = type === 'rsa' ? { kty: 'RSA', n: exported.n!, e: exported.e! } : type === 'ec' ? { kty: 'EC', crv: exported.crv!, x: exported.x!, y: exported.y! } : { kty: 'OKP', crv: exported.crv!, x: exported.x! }
  const kid = await calculateJwkThumbprint(publicMembers, 'sha256')
  const privateJwk = privateKey ? (privateKey.export({ format: 'jwk' }) as JWK) : undefined
  return {
    kid,
    alg: chosen,
    publicJwk: { ...publicMembers, kid, alg: chosen, use: 'sig' },
    privateKeyEnc: privateJwk ? seal(kek, Buffer.from(JSON.stringify(privateJwk), 'utf8'), kid) : Buffer.alloc(0),
    kekId: kek.id,
  }
}

// One lock id for every key-set change: instances that change keys at once queue up behind it.
const KEYS_LOCK = sql`pg_advisory_xact_lock(7351003611)`
const NEXT_VERSION = sql<string>`nextval('signing_key_version_seq')`
// Retired, removed and revoked keys never sign again: their private part is destroyed.
const DESTROYED = Buffer.alloc(0)

async function lock(trx: Executor): Promise<void> {
  await sql`select ${KEYS_LOCK}`.execute(trx)
}

/** Every key with its state and dates, newest first. */
export async function listKeys(db: Executor): Promise<KeyInfo[]> {
  const rows = await db
    .selectFrom('signing_key')
    .select(['kid', 'alg', 'state', 'kek_id', 'created_at', 'activate_at', 'activated_at', 'retired_at', 'remove_at', 'removed_at', 'revoked_at', 'revoked_reason'])
    .orderBy('created_at', 'desc')
    .orderBy('kid')
    .execute()
  return rows.map(toKeyInfo)
}

/** The keys the keyring needs: the published ones (pending, active, retired). */
export async function loadLiveKeys(db: Executor): Promise<SigningKeyRow[]> {
  return db.selectFrom('signing_key').selectAll().where('state', 'in', ['pending', 'active', 'retired']).orderBy('created_at', 'desc').orderBy('kid').execute()
}

/** A value that changes whenever any key row changes: one tiny query for every instance's poll. */
export async function keySetVersion(db: Executor): Promise<string> {
  const r = await sql<{ v: string }>`select coalesce(max(version), 0)::text || ':' || count(*)::text as v from signing_key`.execute(db)
  return r.rows[0]!.v
}

export interface KeyOptions {
  /** Milliseconds since the epoch (the injected clock); defaults to the wall clock. */
  now?: number
  policy?: KeyPolicy
}

function resolved(opts: KeyOptions) {
  const now = opts.now ?? Date.now()
  return { now, at: new Date(now), policy: opts.policy ?? defaultKeyPolicy() }
}

async function insertKey(db: Executor, key: PreparedKey, state: KeyState, at: Date, dates: { activateAt?: Date; removeAt?: Date } = {}) {
  await db
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

async function retireActive(trx: Executor, at: Date, policy: KeyPolicy): Promise<string[]> {
  const rows = await trx
    .updateTable('signing_key')
    .set({ state: 'retired', retired_at: at, remove_at: new Date(at.getTime() + policy.retentionSeconds * 1000), private_key_enc: DESTROYED, version: NEXT_VERSION })
    .where('state', '=', 'active')
    .returning('kid')
    .execute()
  return rows.map((r) => r.kid)
}

async function activate(trx: Executor, kid: string, at: Date): Promise<void> {
  await trx.updateTable('signing_key').set({ state: 'active', activated_at: at, version: NEXT_VERSION }).where('kid', '=', kid).execute()
}

/**
 * The algorithm of a successor: an explicit one wins; else the active key's (so that a rotation
 * to another algorithm sticks); else the configured one (no active key to copy from).
 */
function successorAlg(explicit: SigningAlg | undefined, active: { alg: string } | undefined, policy: KeyPolicy): SigningAlg {
  if (explicit) return explicit
  if (active && (SIGNING_ALGS as readonly string[]).includes(active.alg)) return active.alg as SigningAlg
  return policy.alg
}

async function activeAlg(db: Executor): Promise<{ alg: string } | undefined> {
  return db.selectFrom('signing_key').select('alg').where('state', '=', 'active').executeTakeFirst()
}

/** Whether the sealed private key of `row` opens with one of `keks` (a pending key about to sign). */
function opens(row: Pick<SigningKeyRow, 'kid' | 'kek_id' | 'private_key_enc'>, keks: KekSet): boolean {
  try {
    openWith(keks, Buffer.from(row.private_key_enc), row.kid, row.kek_id)
    return true
  } catch {
    return false
  }
}

/**
 * Makes sure one active key exists, creating it if not. Safe from many instances at once:
 * the advisory lock serialises them and the second finds the first one's key.
 */
export async function ensureActiveKey(db: Db, alg: SigningAlg, kek: Kek, opts: KeyOptions = {}): Promise<{ created: string | undefined }> {
  const existing = await db.selectFrom('signing_key').select('kid').where('state', '=', 'active').executeTakeFirst()
  if (existing) return { created: undefined }
  const { at } = resolved(opts)
  const fresh = await generateSigningKey(alg, kek) // outside the lock: RSA generation is slow
  return db.transaction().execute(async (trx) => {
    await lock(trx)
    const active = await trx.selectFrom('signing_key').select('kid').where('state', '=', 'active').executeTakeFirst()
    if (active) return { created: undefined }
    await insertKey(trx, fresh, 'active', at)
    return { created: fresh.kid }
  })
}

/**
 * Rotates NOW: a successor signs at once and the active key is retired (still published).
 * The successor is the pending key (the standby, already in every JWKS cache when it has been
 * published for the publish lead) when it has the wanted algorithm, else a new key. `alg`
 * undefined = the active key's algorithm. For emergencies and tests; the planned way is
 * `scheduleRotation`.
 */
export async function rotateKey(
  db: Db,
  alg: SigningAlg | undefined,
  kek: Kek | KekSet,
  opts: KeyOptions = {},
): Promise<{ kid: string; alg: SigningAlg; retired: string[]; promoted: boolean; prepublished: boolean }> {
  const { now, at, policy } = resolved(opts)
  const keks = 'current' in kek ? kek : kekSet(kek)
  let fresh = await generateSigningKey(successorAlg(alg, await activeAlg(db), policy), keks.current)
  return db.transaction().execute(async (trx) => {
    await lock(trx)
    const wanted = successorAlg(alg, await activeAlg(trx), policy)
    const pending = await trx.selectFrom('signing_key').select(['kid', 'alg', 'created_at', 'kek_id', 'private_key_enc']).where('state', '=', 'pending').executeTakeFirst()
    const retired = await retireActive(trx, at, policy)
    if (pending && pending.alg === wanted && opens(pending, keks)) {
      await activate(trx, pending.kid, at)
      return { kid: pending.kid, alg: wanted, retired, promoted: true, prepublished: prepublished(pending, now, policy) }
    }
    if (fresh.alg !== wanted) fresh = await generateSigningKey(wanted, keks.current)
    await insertKey(trx, fresh, 'active', at)
    return { kid: fresh.kid, alg: wanted, retired, promoted: false, prepublished: false }
  })
}

export interface ScheduledRotation {
  kid: string
  alg: string
  state: 'pending' | 'active'
  activateAt: Date
  /** false when a rotation was already scheduled (or the standby is promoted): that pending key is the answer. */
  created: boolean
  /** A pending key of another algorithm that was withdrawn for this one (it never signed). */
  withdrawn?: string
}

/**
 * Schedules a rotation: the next key signs as soon as it has been published for the publish lead.
 * - a pending key (the standby) of the wanted algorithm exists: it is the answer, and its
 *   activation is brought forward to max(now, its publication + lead) (idempotent);
 * - a pending key of another algorithm (an explicit `alg`): it never signed, so it is withdrawn
 *   (`removed`) and a new key of `alg` is published;
 * - no pending key: a new key is published now and signs from `now + publishLeadSeconds`;
 * - no active key at all: the new key is active at once.
 * `alg` undefined = the active key's algorithm.
 */
export async function scheduleRotation(db: Db, alg: SigningAlg | undefined, kek: Kek, opts: KeyOptions = {}): Promise<ScheduledRotation> {
  const { now, at, policy } = resolved(opts)
  let fresh: PreparedKey | undefined
  const make = async (a: SigningAlg) => (fresh?.alg === a ? fresh : (fresh = await generateSigningKey(a, kek)))
  const pendingBefore = await db.selectFrom('signing_key').select('alg').where('state', '=', 'pending').executeTakeFirst()
  const wantedBefore = successorAlg(alg, await activeAlg(db), policy)
  if (pendingBefore?.alg !== wantedBefore) await make(wantedBefore) // outside the lock: RSA generation is slow
  return db.transaction().execute(async (trx) => {
    await lock(trx)
    const rows = await trx.selectFrom('signing_key').select(['kid', 'alg', 'state', 'created_at', 'activate_at']).where('state', 'in', ['pending', 'active']).execute()
    const pending = rows.find((r) => r.state === 'pending')
    const active = rows.find((r) => r.state === 'active')
    const wanted = successorAlg(alg, active, policy)
    if (!active) {
      const key = await make(wanted)
      await insertKey(trx, key, 'active', at)
      return { kid: key.kid, alg: wanted, state: 'active' as const, activateAt: at, created: true }
    }
    if (pending && pending.alg === wanted) {
      const current = activationTime({ ...pending, activated_at: null, retired_at: null, remove_at: null }, policy)
      const soonest = Math.max(now, pending.created_at.getTime() + policy.publishLeadSeconds * 1000)
      const activateAt = new Date(Math.min(current, soonest))
      if (activateAt.getTime() !== pending.activate_at?.getTime()) {
        await trx.updateTable('signing_key').set({ activate_at: activateAt, version: NEXT_VERSION }).where('kid', '=', pending.kid).execute()
      }
      return { kid: pending.kid, alg: pending.alg, state: 'pending' as const, activateAt, created: false }
    }
    if (pending) {
      await trx.updateTable('signing_key').set({ state: 'removed', removed_at: at, private_key_enc: DESTROYED, version: NEXT_VERSION }).where('kid', '=', pending.kid).execute()
    }
    const key = await make(wanted)
    const activateAt = new Date(now + policy.publishLeadSeconds * 1000)
    await insertKey(trx, key, 'pending', at, { activateAt })
    return { kid: key.kid, alg: wanted, state: 'pending' as const, activateAt, created: true, ...(pending ? { withdrawn: pending.kid } : {}) }
  })
}

export interface RevokeResult {
  found: boolean
  /** false when the key was revoked already (nothing changed). */
  revoked: boolean
  previousState?: KeyState
  /** The key that signs from now on, when the revoked key was the active one. */
  successor?: string
  /**
   * Whether that successor had been in the JWKS for at least the publish lead (the standby), so
   * every resource server that honours the cache headers has it already; false for a key
   * published more recently or generated by the revoke.
   */
  successorPrepublished?: boolean
}

/**
 * Emergency revoke: the key leaves the JWKS and verification at once (its private part is
 * destroyed); when it was the active key, a successor signs at once: the pending key (the
 * standby, published long ago when rotation is on) if there is one, else a new key of the revoked
 * key's algorithm. Idempotent. `fallbackAlg` is used only when the revoked key's algorithm is
 * not one Tessera generates.
 */
export async function revokeKey(
  db: Db,
  kid: string,
  fallbackAlg: SigningAlg,
  kek: Kek | KekSet,
  opts: KeyOptions & { reason?: string | undefined; actor?: { via: 'admin_api' | 'cli'; clientId?: string | undefined } } = {},
): Promise<RevokeResult> {
  const { now, at, policy } = resolved(opts)
  const keks = 'current' in kek ? kek : kekSet(kek)
  const algOf = (row: { alg: string }) => successorAlg(undefined, row, { ...policy, alg: fallbackAlg })
  const target = await db.selectFrom('signing_key').select(['state', 'alg']).where('kid', '=', kid).executeTakeFirst()
  const standby = await db.selectFrom('signing_key').select('kid').where('state', '=', 'pending').executeTakeFirst()
  // A successor is generated outside the lock when it will probably be needed (no standby).
  let fresh = target?.state === 'active' && !standby ? await generateSigningKey(algOf(target), keks.current) : undefined
  return db.transaction().execute(async (trx) => {
    await lock(trx)
    const row = await trx.selectFrom('signing_key').select(['kid', 'state', 'alg']).where('kid', '=', kid).executeTakeFirst()
    if (!row) return { found: false, revoked: false }
    if (row.state === 'revoked') return { found: true, revoked: false, previousState: row.state }
    await trx
      .updateTable('signing_key')
      .set({ state: 'revoked', revoked_at: at, revoked_reason: opts.reason ?? null, private_key_enc: DESTROYED, version: NEXT_VERSION })
      .where('kid', '=', kid)
      .execute()
    let successor: string | undefined
    let successorPrepublished: boolean | undefined
    if (row.state === 'active') {
      const pending = await trx.selectFrom('signing_key').select(['kid', 'created_at', 'kek_id', 'private_key_enc']).where('state', '=', 'pending').executeTakeFirst()
      if (pending && opens(pending, keks)) {
        await activate(trx, pending.kid, at)
        successor = pending.kid
        successorPrepublished = prepublished(pending, now, policy)
      } else {
        if (fresh?.alg !== algOf(row)) fresh = await generateSigningKey(algOf(row), keks.current)
        await insertKey(trx, fresh, 'active', at)
        successor = fresh.kid
        successorPrepublished = false
      }
    }
    // SECURITY #122: who revoked which key, when, and what signs now; in the same transaction.
    await recordEvent(trx, {
      type: 'signing_key.revoked',
      clientId: opts.actor?.clientId,
      detail: { kid, previous_state: row.state, successor: successor ?? null, successor_prepublished: successorPrepublished ?? null, reason: opts.reason ?? null, via: opts.actor?.via ?? null },
    })
    return { found: true, revoked: true, previousState: row.state, ...(successor !== undefined ? { successor, successorPrepublished } : {}) }
  })
}

/** What one schedule step did. */
export interface ScheduleResult {
  activated?: string
  retired: string[]
  removed: string[]
  published?: string
  /** A due pending key that no configured KEK opens: it was not activated. */
  blocked?: string
}

const NOTHING: ScheduleResult = { retired: [], removed: [] }

/** Whether `result` changed any key. */
export function changed(result: ScheduleResult): boolean {
  return result.activated !== undefined || result.published !== undefined || result.retired.length > 0 || result.removed.length > 0
}

/**
 * One step of the key schedule at `now`: activate the due pending key (retiring the active one),
 * remove retired keys whose tokens have all expired, publish the next key when its time has
 * come. Idempotent and safe from many instances at once: an advisory lock serialises them and
 * each re-reads the keys under it, so exactly one of them makes each change.
 */
export async function runKeySchedule(db: Db, keks: KekSet, opts: KeyOptions = {}): Promise<ScheduleResult> {
  const { now, at, policy } = resolved(opts)
  const due = (rows: SigningKeyRow[]) => {
    const pending = rows.find((r) => r.state === 'pending')
    const active = rows.find((r) => r.state === 'active')
    return {
      pending,
      active,
      activation: pending !== undefined && activationTime(pending, policy) <= now,
      removals: rows.filter((r) => r.state === 'retired' && removalTime(r, policy) <= now),
      publication: publicationTime(rows, policy) <= now,
    }
  }
  const before = due(await loadLiveKeys(db))
  if (!before.activation && before.removals.length === 0 && !before.publication && before.active) return NOTHING
  // A new key is made outside the lock (RSA generation is slow) when one will probably be needed:
  // a publication, an activation (the next standby follows it), or no key at all. Its algorithm is
  // the one of the key that signs after this step.
  const rotating = policy.rotationIntervalSeconds > 0
  const signsNext = before.activation ? before.pending : before.active
  let fresh =
    before.publication || (before.activation && rotating) || (!before.active && !before.pending) ? await generateSigningKey(successorAlg(undefined, signsNext, policy), keks.current) : undefined
  const make = async (alg: SigningAlg) => (fresh?.alg === alg ? fresh : (fresh = await generateSigningKey(alg, keks.current)))
  return db.transaction().execute(async (trx) => {
    await lock(trx)
    const rows = await loadLiveKeys(trx)
    const d = due(rows)
    const result: ScheduleResult = { retired: [], removed: [] }
    let active = d.active
    let pending = d.pending
    if (pending && (d.activation || !active)) {
      if (opens(pending, keks)) {
        result.retired = await retireActive(trx, at, policy)
        await activate(trx, pending.kid, at)
        result.activated = pending.kid
        active = { ...pending, state: 'active', activated_at: at }
        pending = undefined
      } else {
        result.blocked = pending.kid
      }
    }
    if (!active) {
      const key = await make(policy.alg)
      await insertKey(trx, key, 'active', at)
      result.activated = key.kid
      return result
    }
    for (const r of d.removals) {
      await trx.updateTable('signing_key').set({ state: 'removed', removed_at: at, private_key_enc: DESTROYED, version: NEXT_VERSION }).where('kid', '=', r.kid).execute()
      result.removed.push(r.kid)
    }
    // The standby: published right after a key became active, in the same transaction as the
    // activation, with the algorithm of the key that signs now.
    const after = pending ? [active, pending] : [active]
    if (publicationTime(after, policy) <= now) {
      const key = await make(successorAlg(undefined, active, policy))
      await insertKey(trx, key, 'pending', at, { activateAt: new Date(standbyActivation(active, now, policy)) })
      result.published = key.kid
    }
    return result
  })
}

/**
 * Imports an existing key (prepared by `prepareImportedKey`) as `state`:
 * - pending: published now, signs after the publish lead (when no other key is pending);
 * - active: signs at once, the active key is retired;
 * - retired: published for verification only (public keys suffice), removed after the retention.
 */
export async function importKey(db: Db, key: PreparedKey, state: 'pending' | 'active' | 'retired', opts: KeyOptions = {}): Promise<{ kid: string; alg: string; state: KeyState; retired: string[] }> {
  const { now, at, policy } = resolved(opts)
  if (state !== 'retired' && key.privateKeyEnc.length === 0) throw new KeyImportError(`a ${state} key signs: import its private key, or import the public key as retired`)
  return db.transaction().execute(async (trx) => {
    await lock(trx)
    const existing = await trx.selectFrom('signing_key').select('state').where('kid', '=', key.kid).executeTakeFirst()
    if (existing) throw new KeyImportError(`key ${key.kid} exists already (${existing.state})`)
    if (state === 'pending') {
      const pending = await trx.selectFrom('signing_key').select('kid').where('state', '=', 'pending').executeTakeFirst()
      if (pending) throw new KeyImportError(`key ${pending.kid} is pending already: revoke it first, or import as active`)
      await insertKey(trx, key, 'pending', at, { activateAt: new Date(now + policy.publishLeadSeconds * 1000) })
      return { kid: key.kid, alg: key.alg, state, retired: [] }
    }
    if (state === 'active') {
      const retired = await retireActive(trx, at, policy)
      await insertKey(trx, key, 'active', at)
      return { kid: key.kid, alg: key.alg, state, retired }
    }
    await insertKey(trx, key, 'retired', at, { removeAt: new Date(now + policy.retentionSeconds * 1000) })
    return { kid: key.kid, alg: key.alg, state, retired: [] }
  })
}

/**
 * Re-encrypts every stored private key under the current KEK (after a KEK rotation), opening
 * each with the KEK its row names. Keys no configured KEK opens are reported, not changed.
 */
export async function rewrapKeys(db: Db, keks: KekSet): Promise<{ kekId: string; rewrapped: string[]; unchanged: number; failed: string[] }> {
  return db.transaction().execute(async (trx) => {
    await lock(trx)
    const rows = await trx.selectFrom('signing_key').select(['kid', 'kek_id', 'private_key_enc']).execute()
    const result = { kekId: keks.current.id, rewrapped: [] as string[], unchanged: 0, failed: [] as string[] }
    for (const row of rows) {
      const sealed = Buffer.from(row.private_key_enc)
      if (sealed.length === 0 || row.kek_id === keks.current.id) {
        result.unchanged++
        continue
      }
      let plaintext: Buffer
      try {
        plaintext = openWith(keks, sealed, row.kid, row.kek_id)
      } catch {
        result.failed.push(row.kid)
        continue
      }
      const resealed = seal(keks.current, plaintext, row.kid)
      plaintext.fill(0)
      await trx.updateTable('signing_key').set({ private_key_enc: resealed, kek_id: keks.current.id, version: NEXT_VERSION }).where('kid', '=', row.kid).execute()
      result.rewrapped.push(row.kid)
    }
    return result
  })
}

/** The private JWK of a row (keyring only); throws without key material in the message. */
export function openPrivateJwk(keks: KekSet, row: Pick<SigningKeyRow, 'kid' | 'kek_id' | 'private_key_enc'>): JWK {
  return JSON.parse(openWith(keks, Buffer.from(row.private_key_enc), row.kid, row.kek_id).toString('utf8')) as JWK
}
