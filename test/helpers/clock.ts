// Clocks for tests: one the test moves by hand (timers fire when it does), and the wall clock's
// timers with a time source of the test's own.
import { systemClock, type Clock } from '../../src/clock.js'

/**
 * A clock that stands still until the test moves it. Timers (background jobs, caches) fire when
 * `advance` passes their time, each once, in time order; nothing ever waits for the wall clock.
 */
export class ManualClock implements Clock {
  private readonly timers = new Set<{ at: number; fn: () => void }>()

  constructor(public ms = Date.now()) {}

  nowMs(): number {
    return this.ms
  }

  nowSeconds(): number {
    return Math.floor(this.ms / 1000)
  }

  setTimer(ms: number, fn: () => void): () => void {
    const timer = { at: this.ms + ms, fn }
    this.timers.add(timer)
    return () => this.timers.delete(timer)
  }

  /** Moves time by `ms` (negative moves it back) and fires every timer that has come due. */
  advance(ms: number): void {
    this.ms += ms
    const due = [...this.timers].filter((t) => t.at <= this.ms).sort((a, b) => a.at - b.at)
    for (const t of due) {
      this.timers.delete(t)
      t.fn()
    }
  }
}

/** The wall clock's timers, with the time that `nowMs` says (a test's own, movable time). */
export function clockAt(nowMs: () => number): Clock {
  return { nowMs, nowSeconds: () => Math.floor(nowMs() / 1000), setTimer: systemClock.setTimer }
}
