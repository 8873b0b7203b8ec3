import type { Clock } from './clock.js'
import { databaseErrorCode, isDatabaseUnavailable } from './errors.js'

/** The first wait between two start-up attempts; it doubles after each failure, up to the cap. */
export const STARTUP_RETRY_FIRST_MS = 250
/** The longest wait between two attempts: readiness comes within about this long of the database. */
export const STARTUP_RETRY_MAX_MS = 2000
/** While start-up keeps failing for the same reason, one log line at most this often. */
export const STARTUP_LOG_EVERY_MS = 30_000

/**
 * A condition start-up waits out that is not a database error (migrations not applied yet).
 * Its message is shown by `/readyz`, so it never holds a secret.
 */
export class NotReadyError extends Error {
  constructor(message: string) {
    super(message)
    this.name = 'NotReadyError'
  }
}

/**
 * Why start-up should try again, as `/readyz` shows it: the kind of problem and at most an error
 * code, never a host, user or password. Undefined: the error is fatal (a wrong configuration, a
 * wrong KEK, a schema newer than the code), and the instance must not wait for it.
 */
export function notReadyReason(err: unknown): string | undefined {
  if (err instanceof NotReadyError) return err.message
  if (!isDatabaseUnavailable(err)) return undefined
  const code = databaseErrorCode(err)
  return code ? `database unavailable (${code})` : 'database unavailable'
}

export interface StartupLog {
  warn(obj: object, msg: string): void
}

export interface StartupDeps {
  readonly clock: Clock
  readonly log: StartupLog
  /** Called after each failed attempt with the reason (`notReadyReason`). */
  readonly waiting: (reason: string) => void
}

/**
 * Start-up of an instance that already listens: runs `attempt` (connect, check the schema, load
 * the keys) until it succeeds, waiting 250 ms, 500 ms, … at most 2 s between attempts while the
 * database is unavailable or not migrated yet. Logs the first failure, then at most one line per
 * `STARTUP_LOG_EVERY_MS` (with the count) unless the kind of failure changes. Any other error is
 * fatal and ends the loop.
 */
export class Startup {
  private stopped = false
  private cancelWait: (() => void) | undefined
  private running: Promise<boolean> | undefined
  private attemptCount = 0

  constructor(
    private readonly attempt: () => Promise<void>,
    private readonly deps: StartupDeps,
  ) {}

  /** Attempts made so far. */
  get attempts(): number {
    return this.attemptCount
  }

  /**
   * Resolves true once an attempt succeeded, false when `stop()` came first; rejects with the
   * first fatal error.
   */
  run(): Promise<boolean> {
    this.running ??= this.loop()
    return this.running
  }

  /** Ends the loop: a wait ends at once, an attempt in progress is waited for. */
  async stop(): Promise<void> {
    this.stopped = true
    this.cancelWait?.()
    await this.running?.catch(() => undefined)
  }

  private async loop(): Promise<boolean> {
    const { clock, log } = this.deps
    const startedMs = clock.nowMs()
    let delayMs = STARTUP_RETRY_FIRST_MS
    let logged: { kind: string; atMs: number; attempts: number } | undefined
    while (!this.stopped) {
      this.attemptCount++
      try {
        await this.attempt()
        return !this.stopped
      } catch (err) {
        const reason = notReadyReason(err)
        if (reason === undefined) throw err
        this.deps.waiting(reason)
        // The kind, not the code: a database flapping between two codes is one story.
        const kind = err instanceof NotReadyError ? reason : 'database'
        const nowMs = clock.nowMs()
        if (!logged || logged.kind !== kind || nowMs - logged.atMs >= STARTUP_LOG_EVERY_MS) {
          const e = err as { message?: unknown; code?: unknown }
          log.warn(
            {
              attempts: this.attemptCount,
              failedSinceLastLine: this.attemptCount - (logged?.attempts ?? 0),
              waitingSeconds: Math.round((nowMs - startedMs) / 1000),
              err: { message: String(e.message || e.code || err), code: e.code },
            },
            `not ready: ${reason}; retrying (every ${STARTUP_RETRY_MAX_MS / 1000} s at most)`,
          )
          logged = { kind, atMs: nowMs, attempts: this.attemptCount }
        }
      }
      if (this.stopped) break
      await this.wait(delayMs)
      delayMs = Math.min(delayMs * 2, STARTUP_RETRY_MAX_MS)
    }
    return false
  }

  private wait(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const done = () => {
        this.cancelWait = undefined
        resolve()
      }
      const cancelTimer = this.deps.clock.setTimer(ms, done)
      this.cancelWait = () => {
        cancelTimer()
        done()
      }
    })
  }
}
