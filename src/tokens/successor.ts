import { createHmac, hkdfSync } from 'node:crypto'
import type { Kek } from '../keys/kek.js'
import { REFRESH_TOKEN_PREFIX } from './refresh-token.js'

/**
 * A refresh token's successor is derived from it: HMAC-SHA-256 under a key that HKDF draws
 * from the key-encryption key. So the successor of a token is always the same value, and a
 * retry within the grace window can be answered with it again without any plaintext token
 * being stored: the database keeps only hashes, and deriving needs both the parent token
 * and the KEK, which the database never sees.
 */
export class SuccessorDeriver {
  private readonly keys: Buffer[]

  /** `keks[0]` is the current KEK; the others are still accepted for retries. */
  constructor(keks: readonly Kek[]) {
    if (keks.length === 0) throw new Error('SuccessorDeriver needs at least one key-encryption key')
    this.keys = keks.map((k) => Buffer.from(hkdfSync('sha256', k.key, Buffer.from('tessera', 'utf8'), Buffer.from('refresh-token successor v1', 'utf8'), 32)))
  }

  /** The possible successors of `parent`, one per KEK; the first is the one a rotation issues. */
  successors(parent: string): string[] {
    return this.keys.map((key) => REFRESH_TOKEN_PREFIX + createHmac('sha256', key).update(parent, 'utf8').digest('base64url'))
  }
}
