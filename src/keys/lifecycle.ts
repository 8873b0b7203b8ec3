import { recordEvent } from '../audit/audit.store.js'
import type { AdminActor } from '../audit/context.js'
import { SIGNING_ALGS, type SigningAlg } from '../config.js'
import type { Db, KeyState, SigningKeyRow, Trx } from '../db/schema.js'
import type { KekSet } from './kek.js'
import { generateSigningKey, KeyImportError, opensWith, reseal, type PreparedKey } from './key-material.js'
import type { ImportState } from './key-params.js'
import {
  activateKey,
  findKey,
  findKeyIn,
  insertKey,
  loadLiveKeys,
  lockKeySet,
  markKeyRevoked,
  removeKey,
  retireActiveKey,
  sealedKeys,
  setActivateAt,
  storeResealedKey,
} from './keys.store.js'
import { activationTime, prepublished, publicationTime, removalTime, standbyActivation, type KeyPolicy } from './policy.js'

// The signing-key lifecycle (README "Signing keys"): each operation is a use case that owns its
// transaction and runs under the key-set lock, so any number of instances and commands can run
// them at once and exactly one of them makes each change.

/** What every lifecycle operation works with. */
export interface KeyOptions {
  /** The KEKs that open stored keys; the current one seals new keys. */
  readonly keks: KekSet
  readonly policy: KeyPolicy
  /** The injected clock's time (ms): every date a key gets. */
  readonly nowMs: number
}

/** Hands out a key of the asked algorithm: the one generated before the lock when it fits, else a new one. */
type MakeKey = (alg: SigningAlg) => Promise<PreparedKey>

/**
 * Runs `work` in a transaction that holds the key-set lock, so it re-reads the keys under the lock
 * and decides on what is there then. Key generation is slow (RSA), so when `work` will probably
 * need a new key, `guess` (reading outside the lock) names its algorithm and the key is generated
 * BEFORE the lock is taken; under the lock `make(alg)` hands it out if the algorithm still fits,
 * and generates one otherwise (another instance changed the keys meanwhile).
 */
async function withKeysLock<T>(db: Db, keks: KekSet, guess: () => Promise<SigningAlg | undefined>, work: (trx: Trx, make: MakeKey) => Promise<T>): Promise<T> {
  const alg = await guess()
  let ready = alg === undefined ? undefined : await generateSigningKey(alg, keks.current)
  const make: MakeKey = async (wanted) => {
    const key = ready?.alg === wanted ? ready : await generateSigningKey(wanted, keks.current)
    if (key === ready) ready = undefined // each key is handed out once
    return key
  }
  return db.transaction().execute(async (trx) => {
    await lockKeySet(trx)
    return work(trx, make)
  })
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

/**
 * The algorithm of the key a rotation will probably have to generate (read outside the lock), or
 * undefined when the pending key (the standby) will do: it has the wanted algorithm and opens.
 */
async function successorToMake(db: Db, opts: KeyOptions, alg: SigningAlg | undefined): Promise<SigningAlg | undefined> {
  const wanted = successorAlg(alg, await findKeyIn(db, 'active'), opts.policy)
  const pending = await findKeyIn(db, 'pending')
  return pending?.alg === wanted && opensWith(opts.keks, pending) ? undefined : wanted
}

const dates = (opts: KeyOptions) => ({ now: opts.nowMs, at: new Date(opts.nowMs), policy: opts.policy })

/**
 * Makes sure one active key exists, creating one of the configured algorithm if not. Safe from
 * many instances at once: the second finds the first one's key under the lock.
 */
export async function ensureActiveKey(db: Db, opts: KeyOptions): Promise<{ created: string | undefined }> {
  if (await findKeyIn(db, 'active')) return { created: undefined }
  const { at, policy } = dates(opts)
  return withKeysLock(db, opts.keks, async () => policy.alg, async (trx, make) => {
    if (await findKeyIn(trx, 'active')) return { created: undefined }
    const key = await make(policy.alg)
    await insertKey(trx, key, 'active', at)
    return { created: key.kid }
  })
}

/** Retires the active key now; it stays published for the retention. */
function retireActive(trx: Trx, at: Date, policy: KeyPolicy): Promise<string[]> {
  return retireActiveKey(trx, at, new Date(at.getTime() + policy.retentionSeconds * 1000))
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
  opts: KeyOptions,
  alg?: SigningAlg,
): Promise<{ kid: string; alg: SigningAlg; retired: string[]; promoted: boolean; prepublished: boolean }> {
  const { now, at, policy } = dates(opts)
  return withKeysLock(db, opts.keks, () => successorToMake(db, opts, alg), async (trx, make) => {
    const wanted = successorAlg(alg, await findKeyIn(trx, 'active'), policy)
    const pending = await findKeyIn(trx, 'pending')
    const retired = await retireActive(trx, at, policy)
    if (pending && pending.alg === wanted && opensWith(opts.keks, pending)) {
      await activateKey(trx, pending.kid, at)
      return { kid: pending.kid, alg: wanted, retired, promoted: true, prepublished: prepublished(pending, now, policy) }
    }
    const key = await make(wanted)
    await insertKey(trx, key, 'active', at)
    return { kid: key.kid, alg: wanted, retired, promoted: false, prepublished: false }
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
export async function scheduleRotation(db: Db, opts: KeyOptions, alg?: SigningAlg): Promise<ScheduledRotation> {
  const { now, at, policy } = dates(opts)
  return withKeysLock(db, opts.keks, () => successorToMake(db, opts, alg), async (trx, make) => {
    const pending = await findKeyIn(trx, 'pending')
    const active = await findKeyIn(trx, 'active')
    const wanted = successorAlg(alg, active, policy)
    if (!active) {
      const key = await make(wanted)
      await insertKey(trx, key, 'active', at)
      return { kid: key.kid, alg: wanted, state: 'active' as const, activateAt: at, created: true }
    }
    if (pending && pending.alg === wanted) {
      const current = activationTime({ ...pending, state: 'pending', activated_at: null, retired_at: null, remove_at: null }, policy)
      const soonest = Math.max(now, pending.created_at.getTime() + policy.publishLeadSeconds * 1000)
      const activateAt = new Date(Math.min(current, soonest))
      if (activateAt.getTime() !== pending.activate_at?.getTime()) await setActivateAt(trx, pending.kid, activateAt)
      return { kid: pending.kid, alg: pending.alg, state: 'pending' as const, activateAt, created: false }
    }
    if (pending) await removeKey(trx, pending.kid, at)
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
 * key's algorithm. Idempotent. Audited (`signing_key.revoked`) in the same transaction.
 */
export async function revokeKey(db: Db, opts: KeyOptions, kid: string, how: { reason?: string | undefined; actor?: AdminActor | undefined } = {}): Promise<RevokeResult> {
  const { now, at, policy } = dates(opts)
  const reason = how.reason ?? null
  // A successor is generated before the lock when it will probably be needed (no usable standby).
  const guess = async () => {
    const target = await findKey(db, kid)
    if (target?.state !== 'active') return undefined
    const pending = await findKeyIn(db, 'pending')
    return pending && opensWith(opts.keks, pending) ? undefined : successorAlg(undefined, target, policy)
  }
  return withKeysLock(db, opts.keks, guess, async (trx, make) => {
    const row = await findKey(trx, kid)
    if (!row) return { found: false, revoked: false }
    if (row.state === 'revoked') return { found: true, revoked: false, previousState: row.state }
    await markKeyRevoked(trx, kid, at, reason)
    let successor: string | undefined
    let successorPrepublished: boolean | undefined
    if (row.state === 'active') {
      const pending = await findKeyIn(trx, 'pending')
      if (pending && opensWith(opts.keks, pending)) {
        await activateKey(trx, pending.kid, at)
        successor = pending.kid
        successorPrepublished = prepublished(pending, now, policy)
      } else {
        const key = await make(successorAlg(undefined, row, policy))
        await insertKey(trx, key, 'active', at)
        successor = key.kid
        successorPrepublished = false
      }
    }
    // SECURITY #122: who revoked which key, when, and what signs now; in the same transaction.
    await recordEvent(trx, {
      type: 'signing_key.revoked',
      clientId: how.actor?.clientId,
      detail: { kid, previous_state: row.state, successor: successor ?? null, successor_prepublished: successorPrepublished ?? null, reason, via: how.actor?.via ?? null },
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

/** Whether `result` changed any key. */
export function changed(result: ScheduleResult): boolean {
  return result.activated !== undefined || result.published !== undefined || result.retired.length > 0 || result.removed.length > 0
}

/** What the schedule has to do at `now` with these keys. */
function dueSteps(rows: SigningKeyRow[], now: number, policy: KeyPolicy) {
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

/**
 * One step of the key schedule at `now`: activate the due pending key (retiring the active one),
 * remove retired keys whose tokens have all expired, publish the next key when its time has
 * come. Idempotent and safe from many instances at once: each re-reads the keys under the lock,
 * so exactly one of them makes each change.
 */
export async function runKeySchedule(db: Db, opts: KeyOptions): Promise<ScheduleResult> {
  const { now, at, policy } = dates(opts)
  const before = dueSteps(await loadLiveKeys(db), now, policy)
  if (!before.activation && before.removals.length === 0 && !before.publication && before.active) return { retired: [], removed: [] }
  // A new key will probably be needed for a publication, an activation (the next standby follows
  // it), or when there is no key at all; its algorithm is that of the key that signs after this step.
  const rotating = policy.rotationIntervalSeconds > 0
  const needsKey = before.publication || (before.activation && rotating) || (!before.active && !before.pending)
  const signsNext = before.activation ? before.pending : before.active
  const guess = async () => (needsKey ? successorAlg(undefined, signsNext, policy) : undefined)
  return withKeysLock(db, opts.keks, guess, async (trx, make) => {
    const d = dueSteps(await loadLiveKeys(trx), now, policy)
    const result: ScheduleResult = { retired: [], removed: [] }
    let active = d.active
    let pending = d.pending
    if (pending && (d.activation || !active)) {
      if (opensWith(opts.keks, pending)) {
        result.retired = await retireActive(trx, at, policy)
        await activateKey(trx, pending.kid, at)
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
      await removeKey(trx, r.kid, at)
      result.removed.push(r.kid)
    }
    // The standby: published right after a key became active, in the same transaction as the
    // activation, with the algorithm of the key that signs now.
    if (publicationTime(pending ? [active, pending] : [active], policy) <= now) {
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
export async function importKey(db: Db, opts: KeyOptions, key: PreparedKey, state: ImportState): Promise<{ kid: string; alg: string; state: KeyState; retired: string[] }> {
  const { now, at, policy } = dates(opts)
  if (state !== 'retired' && key.privateKeyEnc.length === 0) throw new KeyImportError(`a ${state} key signs: import its private key, or import the public key as retired`)
  return withKeysLock(db, opts.keks, async () => undefined, async (trx) => {
    const existing = await findKey(trx, key.kid)
    if (existing) throw new KeyImportError(`key ${key.kid} exists already (${existing.state})`)
    if (state === 'pending') {
      const pending = await findKeyIn(trx, 'pending')
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
  return withKeysLock(db, keks, async () => undefined, async (trx) => {
    const result = { kekId: keks.current.id, rewrapped: [] as string[], unchanged: 0, failed: [] as string[] }
    for (const row of await sealedKeys(trx)) {
      if (row.private_key_enc.length === 0 || row.kek_id === keks.current.id) {
        result.unchanged++
        continue
      }
      const resealed = reseal(keks, row)
      if (!resealed) {
        result.failed.push(row.kid)
        continue
      }
      await storeResealedKey(trx, row.kid, resealed, keks.current.id)
      result.rewrapped.push(row.kid)
    }
    return result
  })
}
