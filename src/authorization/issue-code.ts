import { createHash, randomBytes } from 'node:crypto'
import { recordEvent } from '../audit/audit.store.js'
import type { RequestContext } from '../audit/context.js'
import type { Db } from '../db/schema.js'
import { OAuthError } from '../errors.js'
import { consumeRequest, insertCode, type CodeBinding } from './authorization.store.js'
import { addSessionClient } from './sso-sessions.store.js'

/** Authorization codes carry a prefix (secret scanners) and 256 random bits. */
export const CODE_PREFIX = 'tsac_'
const CODE = /^tsac_[A-Za-z0-9_-]{43}$/

/** SHA-256 of a code, or undefined for a string that cannot be one of ours. */
export function hashCode(code: string): Buffer | undefined {
  return CODE.test(code) ? createHash('sha256').update(code, 'ascii').digest() : undefined
}

/**
 * Issues a code for a completed authorization: consumes the pending request (so a form posted
 * twice yields one code), stores the code's hash with everything it is bound to, notes the client
 * under the SSO session, and audits it; one transaction.
 */
export async function issueCode(db: Db, binding: CodeBinding, pendingRequestId: string | undefined, ttlSeconds: number, ctx: RequestContext): Promise<string> {
  const code = CODE_PREFIX + randomBytes(32).toString('base64url')
  await db.transaction().execute(async (trx) => {
    if (pendingRequestId !== undefined && !(await consumeRequest(trx, pendingRequestId))) throw new OAuthError('invalid_request', 'this authorization request was already completed')
    await insertCode(trx, hashCode(code)!, binding, ttlSeconds)
    await addSessionClient(trx, binding.sessionId, binding.clientId)
    await recordEvent(trx, { type: 'authorization_code.issued', clientId: binding.clientId, userId: binding.userId, ...ctx, detail: { sid: binding.sessionId } })
  })
  return code
}
