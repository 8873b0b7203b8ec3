import { availableParallelism } from 'node:os'
import { hash, parseOptions, verify } from '@node-rs/argon2'

export interface Argon2Params {
  readonly memoryKib: number
  readonly timeCost: number
  readonly parallelism: number
}

/** Longest password accepted, in UTF-8 bytes (bounded so hashing cannot be used for DoS). */
export const MAX_PASSWORD_BYTES = 1024
/** Shortest password accepted when one is set (ASVS 6.2.1). */
export const MIN_PASSWORD_LENGTH = 8

// A small built-in list of the passwords attackers try first; rejected when a password is set.
const COMMON_PASSWORDS = new Set([
  'password', 'password1', 'password123', '12345678', '123456789', '1234567890', 'qwertyuiop', 'qwerty123',
  'iloveyou', 'sunshine', 'princess', 'football', 'baseball', 'welcome1', 'letmein1', 'admin123',
  'abc12345', 'passw0rd', 'trustno1', 'superman', 'starwars', 'whatever', 'changeme', 'dragon123',
  '11111111', '00000000', '87654321', 'asdfghjk', 'zaq12wsx', '1q2w3e4r', 'q1w2e3r4', 'monkey123',
])

/**
 * Hashing and verification with argon2id, on libuv's thread pool (never on the event loop).
 * At most one hash per core runs at once: more would not go faster, would hold more memory, and
 * would take every pool thread from token signing (WebCrypto runs on the same pool).
 */
export class PasswordHasher {
  private readonly options
  private decoy: Promise<string> | undefined
  private running = 0
  private readonly waiting: (() => void)[] = []
  private readonly limit = Math.max(1, availableParallelism())

  constructor(readonly params: Argon2Params) {
    this.options = {
      algorithm: 2 /* Argon2id */,
      memoryCost: params.memoryKib,
      timeCost: params.timeCost,
      parallelism: params.parallelism,
    } as const
  }

  /** A PHC string `$argon2id$v=19$m=…,t=…,p=…$salt$hash` with a fresh 16-byte salt. */
  hash(password: string): Promise<string> {
    return this.limited(() => hash(password, this.options))
  }

  /** Verifies; a malformed stored hash is a mismatch, not an exception. */
  async verify(stored: string, password: string): Promise<boolean> {
    try {
      return await this.limited(() => verify(stored, password))
    } catch {
      return false
    }
  }

  private async limited<T>(work: () => Promise<T>): Promise<T> {
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
    this.decoy ??= this.hash('decoy password that never matches')
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

/** Reasons a new password is refused, or undefined when it is acceptable. */
export function passwordPolicyProblem(password: string, username?: string): string | undefined {
  if ([...password].length < MIN_PASSWORD_LENGTH) return `password must have at least ${MIN_PASSWORD_LENGTH} characters`
  if (Buffer.byteLength(password, 'utf8') > MAX_PASSWORD_BYTES) return `password must be at most ${MAX_PASSWORD_BYTES} bytes`
  const lower = password.toLowerCase()
  if (COMMON_PASSWORDS.has(lower)) return 'password is too common'
  if (username && lower === username.toLowerCase()) return 'password must not equal the username'
  return undefined
}
