import type { Db, Trx } from '../db/schema.js'
import { OAuthError } from '../errors.js'
import { claimKey, completeKey, findKey, type StoredResponse } from './idempotency.store.js'

export type { StoredResponse } from './idempotency.store.js'

/** An `Idempotency-Key` of a create: who sent it, the key, and what the request was. */
export interface IdempotencyRequest {
  /** The acting admin client: keys are per client. */
  actor: string
  key: string
  /** Hex SHA-256 of method, path and canonical body (`http/admin/preconditions.ts`). */
  fingerprint: string
}

/** What a create returns: its result, and the response a retry gets (which must hold no secret). */
export interface CreateOutcome<T> {
  result: T
  stored: StoredResponse
}

export type IdempotentResult<T> = { replayed: false; result: T } | { replayed: true; response: StoredResponse }

/**
 * Runs a create in one transaction with its Idempotency-Key (if any): the key is claimed first
 * (the primary key serialises two concurrent requests with one key), the create runs, and its
 * response is stored, all committed together. The same key again with the same request gets the
 * stored response (`replayed`); with another request, 422. A create that fails stores nothing
 * (its transaction rolls back): retrying it runs again.
 */
export async function runIdempotent<T>(db: Db, idem: IdempotencyRequest | undefined, create: (trx: Trx) => Promise<CreateOutcome<T>>): Promise<IdempotentResult<T>> {
  return db.transaction().execute(async (trx): Promise<IdempotentResult<T>> => {
    if (idem && !(await claimKey(trx, idem.actor, idem.key, idem.fingerprint))) {
      const found = await findKey(trx, idem.actor, idem.key)
      // Gone between the two statements (housekeeping): the caller retries.
      if (!found) throw new OAuthError('temporarily_unavailable', 'the Idempotency-Key changed meanwhile; retry', 'idempotency key vanished').retryAfter(1)
      if (found.fingerprint !== idem.fingerprint) {
        throw new OAuthError('invalid_request', 'this Idempotency-Key was used for a different request (method, path or body); use a new key').withStatus(422)
      }
      return { replayed: true, response: found.response }
    }
    const outcome = await create(trx)
    if (idem) await completeKey(trx, idem.actor, idem.key, outcome.stored)
    return { replayed: false, result: outcome.result }
  })
}
