// Types for scripts/pg-cluster.mjs (plain JavaScript so that the test runner needs no build).
export class ClusterError extends Error {}
export const TEST_SETTINGS: Readonly<Record<string, string>>
export const BENCH_SETTINGS: Readonly<Record<string, string>>
export function findPgBinDir(): string | null
export function pgVersion(binDir: string): string | null
export function freePort(): Promise<number>
export class Cluster {
  readonly url: string
  port: number | null
  dir: string | null
  /** Stops the server at once, as a crash would (after a checkpoint: no commit is lost), keeping its data for `resume()`. */
  halt(): void
  /** Starts the server again after `halt()`, on the same port with the same data. */
  resume(): void
  stop(): void
  remove(): void
}
export function startCluster(opts?: {
  log?: (msg: string) => void
  settings?: Record<string, string>
  binDir?: string | null
  onCreate?: (cluster: Cluster) => void
}): Promise<{ url: string; port: number; dir: string; binDir: string; version: string | null; settings: Record<string, string>; cluster: Cluster; stop(): void }>
