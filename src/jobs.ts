import type { Clock } from './clock.js'

/** The background jobs every instance runs. */
export const JOB_NAMES = ['key_sync', 'housekeeping', 'change_sync'] as const
export type JobName = (typeof JOB_NAMES)[number]

/** What a background job is. */
export interface JobDefinition {
  readonly name: JobName
  /**
   * Milliseconds until the first run (`first`) and from the end of one run to the next; undefined
   * = never on a timer (the job still runs on demand).
   */
  delayMs(first: boolean): number | undefined
  /** One run. Throwing fails the run; `stopping()` turns true when the instance shuts down. */
  run(stopping: () => boolean): Promise<void>
  /** Logged (warn) when a run fails; once, until a run succeeds again. */
  readonly failureMessage: string
  /** Logged (info) when a run succeeds after failures. */
  readonly recoveryMessage: string
}

export interface JobLog {
  info(obj: object | string, msg?: string): void
  warn(obj: object, msg: string): void
}

export interface JobDeps {
  readonly clock: Clock
  readonly log: JobLog
  /** Counts every run by outcome. */
  readonly count: (job: JobName, outcome: 'ok' | 'error') => void
}

/**
 * One background job: runs on its timer (from the injected clock) and on demand, one run at a
 * time; a failed run is logged (once per streak of failures) and counted, and never reaches the
 * process. The next timer is set when a run ends, so timer runs never pile up behind a slow one
 * (each on-demand `run()` call is one more run, after the one in progress).
 */
export class Job {
  private current: Promise<void> | undefined
  private cancelTimer: (() => void) | undefined
  private failing = false
  private stopped = false

  constructor(
    private readonly def: JobDefinition,
    private readonly deps: JobDeps,
  ) {}

  get name(): JobName {
    return this.def.name
  }

  /** Runs the job now, after the run in progress if any; resolves when this run ended. Never rejects. */
  run(): Promise<void> {
    const next: Promise<void> = (this.current ?? Promise.resolve()).then(() => this.once())
    this.current = next
    void next.finally(() => {
      if (this.current === next) this.current = undefined
    })
    return next
  }

  /** Resolves when no run is in progress. */
  async idle(): Promise<void> {
    while (this.current) await this.current
  }

  /** Starts the timer. */
  start(): void {
    this.schedule(true)
  }

  /** Stops the timer and waits for a run in progress (which sees `stopping()` and may end early). */
  async stop(): Promise<void> {
    this.stopped = true
    this.cancelTimer?.()
    await this.idle()
  }

  private schedule(first: boolean): void {
    const ms = this.def.delayMs(first)
    if (ms === undefined || this.stopped) return
    this.cancelTimer = this.deps.clock.setTimer(ms, () => {
      this.cancelTimer = undefined
      void this.run().then(() => this.schedule(false))
    })
  }

  private async once(): Promise<void> {
    const { name } = this.def
    try {
      await this.def.run(() => this.stopped)
      this.deps.count(name, 'ok')
      if (this.failing) this.deps.log.info({ job: name }, this.def.recoveryMessage)
      this.failing = false
    } catch (err) {
      this.deps.count(name, 'error')
      const e = err as { message?: unknown; code?: unknown }
      if (!this.failing) this.deps.log.warn({ job: name, err: { message: String(e?.message ?? err), code: e?.code } }, this.def.failureMessage)
      this.failing = true
    }
  }
}
