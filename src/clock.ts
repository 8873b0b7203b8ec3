/**
 * The one source of time (STYLE "Time"). Everything that reads the time or waits for it takes a
 * Clock: caches and timers in milliseconds, JWT claims in whole seconds. Decisions shared across
 * instances (expiry, grace, reuse) use the database's `now()` instead.
 */
export interface Clock {
  /** Milliseconds since the epoch. */
  nowMs(): number
  /** Whole seconds since the epoch (JWT NumericDate). */
  nowSeconds(): number
  /** Calls `fn` once after `ms`; a pending timer never keeps the process alive. Returns a cancel function. */
  setTimer(ms: number, fn: () => void): () => void
}

/** The wall clock and Node's timers. */
export const systemClock: Clock = {
  nowMs: () => Date.now(),
  nowSeconds: () => Math.floor(Date.now() / 1000),
  setTimer(ms, fn) {
    const timer = setTimeout(fn, ms)
    timer.unref()
    return () => clearTimeout(timer)
  },
}
