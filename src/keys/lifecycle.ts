import { recordEvent } from '../audit/audit.store.js'
import type { AdminActor } from '../audit/context.js'
import { clientsWithIdTokenAlg } from '../clients/clients.store.js'
import type { SigningAlg } from '../config.js'
import type { Db, KeyState, SigningKeyRow, Trx } from '../db/schema.js'
import { InputError } from '../errors.js'
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
import { activationTime, keyLines, prepublished, publicationTime, removalTime, standbyActivation, type KeyPolicy } from './policy.js'

// The signing-key lifecycle (docs/keys.md "Signing keys"): each operation is a use case that owns its
// transaction and runs under the key-set lock, so any number of instances and commands can run
// them at once and exactly one of them makes each change. Keys form one line per algorithm
// (policy.ts `keyLines`): each line has its own pending → active → retired schedule, standby,
// and emergency revoke; every line shares the one lock.

/** What every lifecycle operation works with. */
export interface KeyOptions {
  /** The KEKs that open stored keys; the current one seals new keys. */
  readonly keks: KekSet
  readonly policy: KeyPolicy
  /** The injected clock's time (ms): every date a key gets. */
  readonly nowMs: number
}

/** Hands out a key of the asked algorithm: one generated before the lock when it fits, else a new one. */
type MakeKey = (alg: SigningAlg) => Promise<PreparedKey>

/**
 * Runs `work` in a transaction that holds the key-set lock, so it re-reads the keys under the lock
 * and decides on what is there then. Key generation is slow (RSA), so when `work` will probably
 * need new keys, `guess` (reading outside the lock) names their algorithms and the keys are
 * generated BEFORE the lock is taken; under the lock `make(alg)` hands one out when one of that
 * algorithm is ready, and generates one otherwise (another instance changed the keys meanwhile).
 */
async function withKeysLock<T>(db: Db, keks: KekSet, guess: () => Promise<readonly SigningAlg[]>, work: (trx: Trx, make: MakeKey) => Promise<T>): Promise<T> {
  const ready = await Promise.all((await guess()).map((alg) => generateSigningKey(alg, keks.current)))
  const make: MakeKey = async (wanted) => {
    const i = ready.findIndex((k) => k.alg === wanted)
    // Each key is handed out once.
    return i >= 0 ? ready.splice(i, 1)[0]! : generateSigningKey(wanted, keks.current)
  }
  return db.transaction().execute(async (trx) => {
    await lockKeySet(trx)
    return work(trx, make)
  })
}

/** A line's algorithm as a SigningAlg (rows hold only these: the table's check constraint). */
const lineAlg = (alg: string): SigningAlg => alg as SigningAlg

/**
 * Whether a rotation of line `alg` will probably have to generate a key (read outside the lock):
 * not when its pending key (the standby) opens.
 */
async function successorToMake(db: Db, opts: KeyOptions, alg: SigningAlg): Promise<SigningAlg[]> {
  const pending = await findKeyIn(db, 'pending', alg)
  return pending && opensWith(opts.keks, pending) ? [] : [alg]
}

const dates = (opts: KeyOptions) => ({ now: opts.nowMs, at: new Date(opts.nowMs), policy: opts.policy })

/**
 * Makes sure every configured line (policy.lines) has an active key, creating the missing ones.
 * Safe from many instances at once: the second finds the first one's keys under the lock.
 */
export async function ensureActiveKeys(db: Db, opts: KeyOptions): Promise<{ created: { kid: string; alg: SigningAlg }[] }> {
  const { at, policy } = dates(opts)
  const missing = async (ex: Db | Trx) => {
    const out: SigningAlg[] = []
    for (const alg of policy.lines) if (!(await findKeyIn(ex, 'active', alg))) out.push(alg)
    return out
  }
  const guess = await missing(db)
  if (guess.length === 0) return { created: [] }
  return withKeysLock(db, opts.keks, async () => guess, async (trx, make) => {
    const created: { kid: string; alg: SigningAlg }[] = []
    for (const alg of await missing(trx)) {
      const key = await make(alg)
      await insertKey(trx, key, 'active', at)
      created.push({ kid: key.kid, alg })
    }
    return { created }
  })
}

/** The active keys none of `keks` opens (a wrong KEK, or a tampered row). */
export async function activeKeysNotOpening(db: Db, keks: KekSet): Promise<{ kid: string; alg: string; kekId: string }[]> {
  const rows = await loadLiveKeys(db)
  return rows.filter((r) => r.state === 'active' && !opensWith(keks, r)).map((r) => ({ kid: r.kid, alg: r.alg, kekId: r.kek_id }))
}

/** Retires a line's active key now; it stays published for the retention. */
function retireActive(trx: Trx, alg: string, at: Date, policy: KeyPolicy): Promise<string[]> {
  return retireActiveKey(trx, alg, at, new Date(at.getTime() + policy.retentionSeconds * 1000))
}

/**
 * Rotates line `alg` NOW (default: the access-token line): a successor signs at once and the
 * active key is retired (still published). The successor is the line's pending key (the standby,
 * already in every JWKS cache when it has been published for the publish lead) when it opens,
 * else a new key. A line without keys starts with this key. For emergencies and tests; the
 * planned way is `scheduleRotation`.
 */
export async function rotateKey(
  db: Db,
  opts: KeyOptions,
  line?: SigningAlg,
): Promise<{ kid: string; alg: SigningAlg; retired: string[]; promoted: boolean; prepublished: boolean }> {
  const { now, at, policy } = dates(opts)
  const alg = line ?? policy.alg
  return withKeysLock(db, opts.keks, () => successorToMake(db, opts, alg), async (trx, make) => {
    const pending = await findKeyIn(trx, 'pending', alg)
    const retired = await retireActive(trx, alg, at, policy)
    if (pending && opensWith(opts.keks, pending)) {
      await activateKey(trx, pending.kid, at)
      return { kid: pending.kid, alg, retired, promoted: true, prepublished: prepublished(pending, now, policy) }
    }
    // A pending key no KEK opens cannot sign: it is withdrawn, the new key is the line's successor.
    if (pending) await removeKey(trx, pending.kid, at)
    const key = await make(alg)
    await insertKey(trx, key, 'active', at)
    return { kid: key.kid, alg, retired, promoted: false, prepublished: false }
  })
}

export interface ScheduledRotation {
  kid: string
  alg: string
  state: 'pending' | 'active'
  activateAt: Date
  /** false when a rotation was already scheduled (or the standby is promoted): that pending key is the answer. */
  created: boolean
}

/**
 * Schedules a rotation of line `alg` (default: the access-token line): the next key signs as soon
 * as it has been published for the publish lead.
 * - the line has a pending key (the standby): it is the answer, and its activation is brought
 *   forward to max(now, its publication + lead) (idempotent);
 * - no pending key: a new key is published now and signs from `now + publishLeadSeconds`;
 * - no active key at all: the new key is active at once (a new line).
 */
export async function scheduleRotation(db: Db, opts: KeyOptions, line?: SigningAlg): Promise<ScheduledRotation> {
  const { now, at, policy } = dates(opts)
  const alg = line ?? policy.alg
  const usable = (p: Awaited<ReturnType<typeof findKeyIn>>) => p !== undefined && opensWith(opts.keks, p)
  const guess = async () => (usable(await findKeyIn(db, 'pending', alg)) ? [] : [alg])
  return withKeysLock(db, opts.keks, guess, async (trx, make) => {
    let pending = await findKeyIn(trx, 'pending', alg)
    const active = await findKeyIn(trx, 'active', alg)
    // A pending key no KEK opens would never activate: it is withdrawn, a new key takes its place.
    if (pending && !usable(pending)) {
      await removeKey(trx, pending.kid, at)
      pending = undefined
    }
    if (!active) {
      const key = await make(alg)
      await insertKey(trx, key, 'active', at)
      return { kid: key.kid, alg, state: 'active' as const, activateAt: at, created: true }
    }
    if (pending) {
      const current = activationTime({ ...pending, state: 'pending', activated_at: null, retired_at: null, remove_at: null }, policy)
      const soonest = Math.max(now, pending.created_at.getTime() + policy.publishLeadSeconds * 1000)
      const activateAt = new Date(Math.min(current, soonest))
      if (activateAt.getTime() !== pending.activate_at?.getTime()) await setActivateAt(trx, pending.kid, activateAt)
      return { kid: pending.kid, alg, state: 'pending' as const, activateAt, created: false }
    }
    const key = await make(alg)
    const activateAt = new Date(now + policy.publishLeadSeconds * 1000)
    await insertKey(trx, key, 'pending', at, { activateAt })
    return { kid: key.kid, alg, state: 'pending' as const, activateAt, created: true }
  })
}

export interface RevokeResult {
  found: boolean
  /** false when the key was revoked already (nothing changed). */
  revoked: boolean
  previousState?: KeyState
  /** The revoked key's line (algorithm). */
  alg?: string
  /** The key that signs its line from now on, when the revoked key was the line's active one. */
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
 * destroyed); when it was its line's active key, a successor signs the line at once: the line's
 * pending key (the standby, published long ago when rotation is on) if it opens, else a new key
 * of the line's algorithm. Other lines are untouched. Idempotent. Audited (`signing_key.revoked`)
 * in the same transaction.
 */
export async function revokeKey(db: Db, opts: KeyOptions, kid: string, how: { reason?: string | undefined; actor?: AdminActor | undefined } = {}): Promise<RevokeResult> {
  const { now, at, policy } = dates(opts)
  const reason = how.reason ?? null
  // A successor is generated before the lock when it will probably be needed (no usable standby).
  const guess = async () => {
    const target = await findKey(db, kid)
    return target?.state === 'active' ? successorToMake(db, opts, lineAlg(target.alg)) : []
  }
  return withKeysLock(db, opts.keks, guess, async (trx, make) => {
    const row = await findKey(trx, kid)
    if (!row) return { found: false, revoked: false }
    if (row.state === 'revoked') return { found: true, revoked: false, previousState: row.state, alg: row.alg }
    await markKeyRevoked(trx, kid, at, reason)
    let successor: string | undefined
    let successorPrepublished: boolean | undefined
    if (row.state === 'active') {
      const pending = await findKeyIn(trx, 'pending', row.alg)
      if (pending && opensWith(opts.keks, pending)) {
        await activateKey(trx, pending.kid, at)
        successor = pending.kid
        successorPrepublished = prepublished(pending, now, policy)
      } else {
        if (pending) await removeKey(trx, pending.kid, at)
        const key = await make(lineAlg(row.alg))
        await insertKey(trx, key, 'active', at)
        successor = key.kid
        successorPrepublished = false
      }
    }
    // SECURITY #122: who revoked which key, when, and what signs now; in the same transaction.
    await recordEvent(trx, {
      type: 'signing_key.revoked',
      clientId: how.actor?.clientId,
      detail: { kid, alg: row.alg, previous_state: row.state, successor: successor ?? null, successor_prepublished: successorPrepublished ?? null, reason, via: how.actor?.via ?? null },
    })
    return { found: true, revoked: true, previousState: row.state, alg: row.alg, ...(successor !== undefined ? { successor, successorPrepublished } : {}) }
  })
}

export interface RetiredLine {
  alg: SigningAlg
  /** The line's active key, now retired (published until the retention ends). */
  retired: string[]
  /** Its pending key, withdrawn (it never signed). */
  withdrawn: string[]
}

/**
 * Ends a key line an operator started (`rotate --alg X`): its active key is retired (still
 * published for the retention, so its tokens verify until they expire) and its pending key
 * withdrawn; the schedule then only removes its keys on time. Refused for a line this
 * configuration needs (SIGNING_ALG, RS256) and for a line an enabled client's ID tokens use.
 * Audited (`signing_key.line_retired`) in the same transaction. Idempotent.
 */
export async function retireLine(db: Db, opts: KeyOptions, alg: SigningAlg, how: { actor?: AdminActor | undefined } = {}): Promise<RetiredLine> {
  const { at, policy } = dates(opts)
  if (policy.lines.includes(alg)) throw new InputError(`the ${alg} line is one this configuration signs with (SIGNING_ALG, or RS256 for ID tokens): it cannot be retired`)
  return withKeysLock(db, opts.keks, async () => [], async (trx) => {
    const users = await clientsWithIdTokenAlg(trx, alg)
    if (users > 0) throw new InputError(`${users} enabled client(s) sign their ID tokens with ${alg}: change or disable them first`)
    const pending = await findKeyIn(trx, 'pending', alg)
    if (pending) await removeKey(trx, pending.kid, at)
    const retired = await retireActive(trx, alg, at, policy)
    const withdrawn = pending ? [pending.kid] : []
    if (retired.length > 0 || withdrawn.length > 0) {
      await recordEvent(trx, { type: 'signing_key.line_retired', clientId: how.actor?.clientId, detail: { alg, retired, withdrawn, via: how.actor?.via ?? null } })
    }
    return { alg, retired, withdrawn }
  })
}

/** What one schedule step did, over every line. */
export interface ScheduleResult {
  activated: string[]
  retired: string[]
  removed: string[]
  published: string[]
  /** Due pending keys that no configured KEK opens: they were not activated. */
  blocked: string[]
}

/** Whether `result` changed any key. */
export function changed(result: ScheduleResult): boolean {
  return result.activated.length > 0 || result.published.length > 0 || result.retired.length > 0 || result.removed.length > 0
}

/** What the schedule has to do at `now` on one line. */
function dueSteps(rows: SigningKeyRow[], configured: boolean, now: number, policy: KeyPolicy) {
  const pending = rows.find((r) => r.state === 'pending')
  const active = rows.find((r) => r.state === 'active')
  const activation = pending !== undefined && activationTime(pending, policy) <= now
  const rotating = policy.rotationIntervalSeconds > 0
  const removals = rows.filter((r) => r.state === 'retired' && removalTime(r, policy) <= now)
  const publication = publicationTime(rows, policy) <= now
  // A configured line needs a signer; another line lives on only while it has an active key.
  const missing = configured && !active && !pending
  return {
    pending,
    active,
    activation,
    removals,
    publication,
    missing,
    due: activation || removals.length > 0 || publication || missing || (configured && !active),
    // A new key will probably be needed for a publication, an activation (the next standby
    // follows it), or a line without keys.
    needsKey: publication || (activation && rotating) || missing,
  }
}

/**
 * One step of the key schedule at `now`, on every line: activate the due pending key (retiring the
 * active one), remove retired keys whose tokens have all expired, publish the next key when its
 * time has come, start a configured line that has no key. Idempotent and safe from many instances
 * at once: each re-reads the keys under the lock, so exactly one of them makes each change.
 */
export async function runKeySchedule(db: Db, opts: KeyOptions): Promise<ScheduleResult> {
  const { now, at, policy } = dates(opts)
  const configured = (alg: string) => (policy.lines as readonly string[]).includes(alg)
  const lines = (rows: SigningKeyRow[]) => [...keyLines(rows, policy)].map(([alg, keys]) => ({ alg: lineAlg(alg), d: dueSteps(keys, configured(alg), now, policy) }))
  const before = lines(await loadLiveKeys(db))
  const result: ScheduleResult = { activated: [], retired: [], removed: [], published: [], blocked: [] }
  if (!before.some((l) => l.d.due)) return result
  const guess = async () => before.filter((l) => l.d.needsKey).map((l) => l.alg)
  return withKeysLock(db, opts.keks, guess, async (trx, make) => {
    for (const { alg, d } of lines(await loadLiveKeys(trx))) {
      let active = d.active
      let pending = d.pending
      // A configured line without an active key takes its pending key early: better than no
      // signer. Another line's pending key (an import that starts a line) waits for its time.
      if (pending && (d.activation || (!active && configured(alg)))) {
        if (opensWith(opts.keks, pending)) {
          result.retired.push(...(await retireActive(trx, alg, at, policy)))
          await activateKey(trx, pending.kid, at)
          result.activated.push(pending.kid)
          active = { ...pending, state: 'active', activated_at: at }
          pending = undefined
        } else {
          result.blocked.push(pending.kid)
        }
      }
      for (const r of d.removals) {
        await removeKey(trx, r.kid, at)
        result.removed.push(r.kid)
      }
      if (!active) {
        if (!configured(alg)) continue
        // A configured line without an active key starts now (a blocked pending key stays pending).
        const key = await make(alg)
        await insertKey(trx, key, 'active', at)
        result.activated.push(key.kid)
        continue
      }
      // The standby: published right after a key became active, in the same transaction as the
      // activation.
      if (publicationTime(pending ? [active, pending] : [active], policy) <= now) {
        const key = await make(alg)
        await insertKey(trx, key, 'pending', at, { activateAt: new Date(standbyActivation(active, now, policy)) })
        result.published.push(key.kid)
      }
    }
    return result
  })
}

/**
 * Imports an existing key (prepared by `prepareImportedKey`) as `state`, on the line of its
 * algorithm:
 * - pending: published now, signs after the publish lead (when no other key is pending);
 * - active: signs at once, the active key is retired;
 * - retired: published for verification only (public keys suffice), removed after the retention.
 */
export async function importKey(db: Db, opts: KeyOptions, key: PreparedKey, state: ImportState): Promise<{ kid: string; alg: string; state: KeyState; retired: string[] }> {
  const { now, at, policy } = dates(opts)
  if (state !== 'retired' && key.privateKeyEnc.length === 0) throw new KeyImportError(`a ${state} key signs: import its private key, or import the public key as retired`)
  return withKeysLock(db, opts.keks, async () => [], async (trx) => {
    const existing = await findKey(trx, key.kid)
    if (existing) throw new KeyImportError(`key ${key.kid} exists already (${existing.state})`)
    if (state === 'pending') {
      const pending = await findKeyIn(trx, 'pending', key.alg)
      if (pending) throw new KeyImportError(`key ${pending.kid} is pending already on the ${key.alg} line: revoke it first, or import as active`)
      await insertKey(trx, key, 'pending', at, { activateAt: new Date(now + policy.publishLeadSeconds * 1000) })
      return { kid: key.kid, alg: key.alg, state, retired: [] }
    }
    if (state === 'active') {
      const retired = await retireActive(trx, key.alg, at, policy)
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
  return withKeysLock(db, keks, async () => [], async (trx) => {
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
