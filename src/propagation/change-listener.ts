import pg from 'pg'
import type { Clock } from '../clock.js'

/** The channel that migration 0012's triggers notify on. */
export const CHANGE_CHANNEL = 'tessera_change'

/** How long a reconnection waits at most between attempts (ms); it starts at 100 ms and doubles. */
export const MAX_RECONNECT_DELAY_MS = 5000

export interface ChangeListenerOptions {
  /** A direct PostgreSQL URL: LISTEN needs a session of its own (not a transaction-mode pooler). */
  readonly url: string
  readonly clock: Clock
  readonly log: {
    info(obj: object, msg: string): void
    warn(obj: object, msg: string): void
  }
  /** A change was committed somewhere (the payload is not needed: the change events are read). */
  readonly onNotify: () => void
  /**
   * LISTEN is in place. After a reconnection (`first` false) notifications may have been missed
   * while the connection was down: the caller reloads everything.
   */
  readonly onListening: (first: boolean) => void
}

/**
 * The LISTEN connection of an instance: one dedicated pg.Client, not from the pool (a pooled
 * connection is handed to other queries and its LISTEN would go with it). When it drops it
 * reconnects with a doubling backoff (100 ms … 5 s) on the injected clock, LISTENs again and says
 * so, and the caller reloads. Meanwhile the caller's poll notices changes (about a second later).
 */
export class ChangeListener {
  private client: pg.Client | undefined
  private stopped = false
  private attempts = 0
  private everListened = false
  private failing = false
  private cancelRetry: (() => void) | undefined

  constructor(private readonly o: ChangeListenerOptions) {}

  /** Whether LISTEN is in place now. */
  get listening(): boolean {
    return this.client !== undefined
  }

  /** Connects and LISTENs once; on failure the retries go on in the background. Never rejects. */
  async start(): Promise<void> {
    await this.connect()
  }

  /**
   * Checks that the connection still answers (a silent network partition would otherwise leave
   * it dead without an error); drops and reconnects it when it does not.
   */
  async check(): Promise<void> {
    const client = this.client
    if (!client) return
    try {
      await client.query('select 1')
    } catch (err) {
      this.lost(client, err)
    }
  }

  /** Closes the connection and stops reconnecting. */
  async stop(): Promise<void> {
    this.stopped = true
    this.cancelRetry?.()
    const client = this.client
    this.client = undefined
    if (client) await endWithin(client, 1000)
  }

  private async connect(): Promise<void> {
    if (this.stopped) return
    const client = new pg.Client({
      connectionString: this.o.url,
      application_name: 'tessera-listen',
      keepAlive: true,
      connectionTimeoutMillis: 5000,
      // Only this connection's own queries: LISTEN and the liveness check.
      query_timeout: 5000,
    })
    client.on('error', (err) => this.lost(client, err))
    client.on('end', () => this.lost(client, undefined))
    client.on('notification', (msg) => {
      if (msg.channel === CHANGE_CHANNEL) this.o.onNotify()
    })
    try {
      await client.connect()
      await client.query(`listen ${CHANGE_CHANNEL}`)
    } catch (err) {
      void endWithin(client, 1000)
      this.retry(err)
      return
    }
    if (this.stopped) {
      await endWithin(client, 1000)
      return
    }
    this.client = client
    this.attempts = 0
    const first = !this.everListened
    this.everListened = true
    if (this.failing) this.o.log.info({}, 'change listener: listening again (reloading what may have been missed)')
    this.failing = false
    this.o.onListening(first)
  }

  private lost(client: pg.Client, err: unknown): void {
    if (this.client !== client) return // an old connection, or one that never listened
    this.client = undefined
    void endWithin(client, 1000)
    this.retry(err)
  }

  private retry(err: unknown): void {
    if (this.stopped) return
    if (!this.failing) {
      const e = err as { message?: unknown; code?: unknown } | undefined
      this.o.log.warn({ err: { message: String(e?.message ?? 'connection ended'), code: e?.code } }, 'change listener: no LISTEN connection; reconnecting (changes are still polled every second)')
    }
    this.failing = true
    const base = Math.min(MAX_RECONNECT_DELAY_MS, 100 * 2 ** this.attempts)
    this.attempts++
    // Jitter, so that a fleet that lost its database together does not reconnect in step.
    const delay = base * (0.8 + Math.random() * 0.4)
    this.cancelRetry = this.o.clock.setTimer(delay, () => {
      this.cancelRetry = undefined
      void this.connect()
    })
  }
}

/**
 * Ends a client, or destroys its socket if ending takes longer than `ms` (a connection behind a
 * silent partition never answers the Terminate message). A bound on shutdown, in real time.
 */
async function endWithin(client: pg.Client, ms: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined
  const timeout = new Promise<'timeout'>((resolve) => {
    timer = setTimeout(() => resolve('timeout'), ms)
    timer.unref()
  })
  const ended = client.end().then(() => 'ended' as const, () => 'ended' as const)
  const outcome = await Promise.race([ended, timeout])
  clearTimeout(timer)
  if (outcome === 'timeout') (client as unknown as { connection?: { stream?: { destroy(): void } } }).connection?.stream?.destroy()
}
