import { TtlCache } from '../cache.js'
import type { Clock } from '../clock.js'
import type { Executor } from '../db/schema.js'
import type { Client } from './client.js'
import { allAllowedOrigins, findClient } from './clients.store.js'

/**
 * Per-instance client cache. Entries live `ttlSeconds` by the injected clock, so a change made on
 * any instance (secret, grants, disable) is seen everywhere within that bound; sooner when the
 * change is announced (propagation/change-sync.ts calls `forget`).
 */
export class ClientCache {
  private readonly byId: TtlCache<string, Client | undefined>
  private readonly origins: TtlCache<'all', Set<string>>

  /** The clock a client's previous secret is judged by (its overlap end). */
  readonly clock: Clock

  constructor(db: Executor, ttlSeconds: number, clock: Clock) {
    this.clock = clock
    this.byId = new TtlCache((id) => findClient(db, id), ttlSeconds * 1000, clock)
    this.origins = new TtlCache(async () => new Set(await allAllowedOrigins(db)), ttlSeconds * 1000, clock)
  }

  get(id: string): Promise<Client | undefined> {
    return this.byId.get(id)
  }

  /** Drops one client (it changed): the next request reads it again. */
  forget(id: string): void {
    this.byId.delete(id)
    this.origins.clear()
  }

  /** Drops every client (changes may have been missed). */
  clear(): void {
    this.byId.clear()
    this.origins.clear()
  }

  /** Whether some enabled client lists `origin` (CORS). */
  async originAllowed(origin: string): Promise<boolean> {
    return (await this.origins.get('all')).has(origin)
  }
}
