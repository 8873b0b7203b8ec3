import type { Clock } from './clock.js'

/**
 * A per-instance read-through cache: a value is loaded on a miss and kept for `ttlMs` by the
 * injected clock, so a change made anywhere (another instance, the CLI) is seen here within that
 * bound, or at once when the change is announced (`delete`, `clear`). Misses are cached too; the
 * map is bounded so that garbage keys cannot fill memory.
 */
export class TtlCache<K, V> {
  private readonly entries = new Map<K, { value: V; expiresMs: number }>()
  /** Bumped by `delete` and `clear`: a load that started before is answered but not kept. */
  private generation = 0

  constructor(
    private readonly load: (key: K) => Promise<V>,
    private readonly ttlMs: number,
    private readonly clock: Clock,
    private readonly maxEntries = 10_000,
  ) {}

  async get(key: K): Promise<V> {
    const now = this.clock.nowMs()
    const hit = this.entries.get(key)
    if (hit && hit.expiresMs > now) return hit.value
    const generation = this.generation
    const value = await this.load(key)
    // A load that read the row before a change was announced must not outlive the announcement.
    if (generation !== this.generation) return value
    if (this.entries.size >= this.maxEntries) this.entries.clear()
    this.entries.set(key, { value, expiresMs: now + this.ttlMs })
    return value
  }

  /** Drops `key`: the next `get` loads it again. */
  delete(key: K): void {
    this.generation++
    this.entries.delete(key)
  }

  /** Drops everything. */
  clear(): void {
    this.generation++
    this.entries.clear()
  }
}
