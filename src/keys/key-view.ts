// The operator view of signing keys and of every key operation's result: one JSON shape, shared
// by the CLI (`tessera keys …`) and the admin API (`/admin/keys…`). Never key material.
import type { KeyListRow } from './keys.store.js'
import type { RetiredLine, RevokeResult, ScheduledRotation } from './lifecycle.js'

/** A key's state and dates; a date that does not apply to its state is null. */
export function keyInfoJson(k: KeyListRow) {
  return {
    kid: k.kid,
    alg: k.alg,
    state: k.state,
    created_at: k.created_at,
    activate_at: k.state === 'pending' ? k.activate_at : null,
    activated_at: k.activated_at,
    retired_at: k.retired_at,
    remove_at: k.state === 'retired' ? k.remove_at : null,
    removed_at: k.removed_at,
    revoked_at: k.revoked_at,
    revoked_reason: k.revoked_reason,
    kek_id: k.kek_id,
  }
}

/** `keys rotate --now` / `{"immediate": true}`. */
export function rotatedJson(r: { kid: string; alg: string; retired: string[]; prepublished: boolean }) {
  return { kid: r.kid, alg: r.alg, state: 'active', retired: r.retired, prepublished: r.prepublished }
}

/** `keys rotate` (scheduled). */
export function scheduledJson(r: ScheduledRotation) {
  return { kid: r.kid, alg: r.alg, state: r.state, activate_at: r.activateAt, created: r.created }
}

/** `keys revoke` of a key that exists. */
export function revokedJson(kid: string, r: RevokeResult) {
  return { kid, alg: r.alg ?? null, state: 'revoked', already_revoked: !r.revoked, successor: r.successor ?? null, successor_prepublished: r.successorPrepublished ?? null }
}

/** `keys import`. */
export function importedJson(r: { kid: string; alg: string; state: string; retired: string[] }) {
  return { kid: r.kid, alg: r.alg, state: r.state, retired: r.retired }
}

/** `keys rewrap`. */
export function rewrappedJson(r: { kekId: string; rewrapped: string[]; unchanged: number; failed: string[] }) {
  return { kek_id: r.kekId, rewrapped: r.rewrapped, unchanged: r.unchanged, failed: r.failed }
}

/** `keys retire-line`. */
export function retiredLineJson(r: RetiredLine) {
  return { alg: r.alg, retired: r.retired, withdrawn: r.withdrawn }
}
