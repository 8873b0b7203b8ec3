import type { Db } from '../db/schema.js'
import { findClient, type Client } from './clients.store.js'

/**
 * Per-instance client cache. Entries live `ttlSeconds`, so a change made on any
 * instance (secret, grants, disable) is seen everywhere within that bound.
 */
export class ClientCache {
  private readonly entries = new Map<string, { client: Client | undefined; expires: number }>()
  constructor(private readonly db: Db, private readonly ttlSeconds: number, private readonly now: () => number = Date.now) {}

  async get(id: string): Promise<Client | undefined> {
    const hit = this.entries.get(id)
    const now = this.now()
    if (hit && hit.expires > now) return hit.client
    const client = await findClient(this.db, id)
    // Unknown ids are cached too (briefly), but the map is bounded so garbage ids cannot fill memory.
    if (this.entries.size >= 10_000) this.entries.clear()
    this.entries.set(id, { client, expires: now + this.ttlSeconds * 1000 })
    return client
  }
}
