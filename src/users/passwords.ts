import { availableParallelism } from 'node:os'
import { parseOptions } from '@node-rs/argon2'
import { HashThreadLost, hashOnPool, verifyOnPool } from './hash-pool.js'
import { OAuthError } from '../errors.js'

export interface Argon2Params {
  readonly memoryKib: number
  readonly timeCost: number
  readonly parallelism: number
}

/** Longest password accepted, in UTF-8 bytes (bounded so hashing cannot be used for DoS). */
export const MAX_PASSWORD_BYTES = 1024
/** Shortest password accepted when one is set (ASVS 6.2.1). */
export const MIN_PASSWORD_LENGTH = 8

/**
 * Common and breached passwords (NIST SP 800-63B §3.1.1.2): the 49,000-entry password list of
 * zxcvbn-ts (`@zxcvbn-ts/language-common`, from public breach corpora), loaded at its first use.
 */
let commonPasswords: Promise<Set<string>> | undefined
async function isCommonPassword(lower: string): Promise<boolean> {
  commonPasswords ??= import('@zxcvbn-ts/language-common').then((m) => new Set(m.default.dictionary['passwords-common'].map((p) => p.toLowerCase())))
  return (await commonPasswords).has(lower)
}

/** A place in the hashing queue, held for one password check (`PasswordHasher.reserve`). */
export interface Reservation {
  verify(stored: string, password: string): Promise<boolean>
  verifyDecoy(password: string): Promise<false>
  /** Gives the place back unused (a throttled or failed check); safe to call more than once. */
  release(): void
}

/** How much argon2id work runs at once, and how much may wait for it. */
export interface HashingLimits {
  /** Hashes at once; 0 = one per CPU core (they run at a lower priority: hash-pool.ts). */
  readonly concurrency: number
  /** Checks waiting beyond those; one more is refused at once (503). */
  readonly queue: number
}

/** The answer when the hashing queue is full: at once, instead of latency without bound. */
export function busyError(): OAuthError {
  return new OAuthError('temporarily_unavailable', 'the server is busy; retry later', SHED_DETAIL).retryAfter(1)
}

/** The `detail` of `busyError`: expected under load, logged at info, not as a server error. */
export const SHED_DETAIL = 'password hashing queue full'

/**
 * Hashing and verification with argon2id, on worker threads of lower priority (never on the event
 * loop; hash-pool.ts): by default one hash per core, so logins use every idle core, while the
 * scheduler still favours the event loop that signs tokens and serves the JWKS. At most `queue`
 * checks wait: the next one is refused at once (`busyError`, 503) rather than answered after an
 * ever longer wait.
 */
export class PasswordHasher {
  private readonly options
  private decoy: Promise<string> | undefined
  private running = 0
  private readonly waiting: (() => void)[] = []
  private readonly limit: number
  private readonly queue: number
  /** Places held by `reserve()` for checks still doing their database work. */
  private reserved = 0
  /** Hashes verified, decoys included (tests check that an unknown user costs one). */
  verifications = 0

  constructor(readonly params: Argon2Params, limits: HashingLimits = { concurrency: 0, queue: Number.POSITIVE_INFINITY }) {
    this.limit = limits.concurrency > 0 ? limits.concurrency : Math.max(1, availableParallelism())
    this.queue = limits.queue
    this.options = {
      algorithm: 2 /* Argon2id */,
      memoryCost: params.memoryKib,
      timeCost: params.timeCost,
      parallelism: params.parallelism,
    } as const
  }

  /** A PHC string `$argon2id$v=19$m=…,t=…,p=…$salt$hash` with a fresh 16-byte salt. */
  hash(password: string): Promise<string> {
    return this.limited(() => hashOnPool(password, this.options))
  }

  /** Verifies; a malformed stored hash is a mismatch, not an exception. Throws `busyError` when the queue is full. */
  async verify(stored: string, password: string): Promise<boolean> {
    return this.limited(async () => {
      this.verifications++
      try {
        return await verifyOnPool(stored, password)
      } catch (err) {
        // A hashing thread that died is no verdict on the password: busy, retry (503).
        if (err instanceof HashThreadLost) throw busyError()
        return false
      }
    })
  }

  /**
   * Holds a place for one check, or throws `busyError` at once when every slot and every place in
   * the queue is taken or held. A check reserves before its database work (throttle counters, user
   * lookup), so a flood is refused before it reaches the database, not after it waited for a
   * connection; the reservation is used by the check's one verification, or released.
   */
  reserve(): Reservation {
    if (this.saturated()) throw busyError()
    this.reserved++
    let held = true
    const release = () => {
      if (held) {
        held = false
        this.reserved--
      }
    }
    return {
      verify: (stored, password) => {
        release()
        return this.verify(stored, password)
      },
      verifyDecoy: (password) => {
        release()
        return this.verifyDecoy(password)
      },
      release,
    }
  }

  /** True when `reserve()` would refuse now: every slot and place in the queue taken or held. */
  saturated(): boolean {
    return this.running + this.waiting.length + this.reserved >= this.limit + this.queue
  }

  private async limited<T>(work: () => Promise<T>): Promise<T> {
    if (this.running >= this.limit && this.waiting.length >= this.queue) throw busyError()
    if (this.running >= this.limit) await new Promise<void>((resolve) => this.waiting.push(resolve))
    else this.running++
    try {
      return await work()
    } finally {
      // Hand the slot straight to the next waiter, or free it.
      const next = this.waiting.shift()
      if (next) next()
      else this.running--
    }
  }

  /**
   * Burns the same time as a real verification, for unknown or disabled users, so the
   * answer's timing does not reveal whether an account exists (ASVS 6.3.8).
   */
  async verifyDecoy(password: string): Promise<false> {
    // Made outside the queue, so that a full queue cannot leave a failed decoy behind.
    this.decoy ??= hashOnPool('decoy password that never matches', this.options)
    await this.verify(await this.decoy, password)
    return false
  }

  /** True when `stored` was made with other parameters than the current ones. */
  needsRehash(stored: string): boolean {
    try {
      const p = parseOptions(stored)
      return p.algorithm !== 2 || p.memoryCost !== this.params.memoryKib || p.timeCost !== this.params.timeCost || p.parallelism !== this.params.parallelism
    } catch {
      return true
    }
  }
}

/**
 * Why a new password is refused (NIST SP 800-63B §3.1.1.2), naming the rule; undefined when it is
 * acceptable. Long passphrases are welcome up to MAX_PASSWORD_BYTES; no composition rules.
 */
export async function passwordPolicyProblem(password: string, username?: string): Promise<string | undefined> {
  if ([...password].length < MIN_PASSWORD_LENGTH) return `password must have at least ${MIN_PASSWORD_LENGTH} characters`
  if (Buffer.byteLength(password, 'utf8') > MAX_PASSWORD_BYTES) return `password must be at most ${MAX_PASSWORD_BYTES} bytes (a long passphrase fits)`
  const lower = password.toLowerCase()
  if (await isCommonPassword(lower)) return 'password is on the list of common and breached passwords: choose another'
  if (username && lower === username.toLowerCase()) return 'password must not equal the username'
  return undefined
}
