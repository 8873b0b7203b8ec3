import { chmodSync, readFileSync, renameSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { createClient, findClient } from './clients/clients.store.js'
import type { Config } from './config.js'
import type { Db } from './db/schema.js'
import { ADMIN_SCOPE } from './http/admin/guard.js'

/** The file of the development admin client, in DATA_DIR (mode 0600). */
export const ADMIN_CREDENTIALS_FILE = 'admin-credentials.json'
/** The name the development admin client is registered under. */
export const DEV_ADMIN_CLIENT_NAME = 'development admin'

/** What `admin-credentials.json` holds (docs/embedded.md). */
export interface AdminCredentials {
  readonly client_id: string
  readonly client_secret: string
  readonly scope: string
  /** Where the server that wrote the file listens (rewritten at each development start). */
  readonly token_endpoint: string
}

export const adminCredentialsPath = (config: Config): string => join(config.dataDir, ADMIN_CREDENTIALS_FILE)

/** Whether this configuration gets a development admin client: development on the embedded database. */
export const devAdminApplies = (config: Config): boolean => config.env === 'development' && config.databaseUrl === undefined

/** The credentials file, or undefined when it is missing or unreadable. */
export function readAdminCredentials(config: Config): AdminCredentials | undefined {
  try {
    const body = JSON.parse(readFileSync(adminCredentialsPath(config), 'utf8')) as Partial<AdminCredentials>
    if (typeof body.client_id !== 'string' || typeof body.client_secret !== 'string' || typeof body.token_endpoint !== 'string') return undefined
    return { client_id: body.client_id, client_secret: body.client_secret, scope: typeof body.scope === 'string' ? body.scope : ADMIN_SCOPE, token_endpoint: body.token_endpoint }
  } catch {
    return undefined
  }
}

/**
 * Development on the embedded database only (never production, never PostgreSQL): makes sure a
 * client_credentials client with the `tessera:admin` scope exists and its credentials are in
 * DATA_DIR/admin-credentials.json (mode 0600, never logged), with the token endpoint this server
 * listens on, for `tessera dev admin-token`. The client is created once (its secret is stored
 * hashed, so a lost file means a new client); later starts only update the endpoint.
 * Returns the file and whether a client was created.
 */
export async function ensureDevAdmin(config: Config, db: Db, tokenEndpoint: string): Promise<{ file: string; created: boolean } | undefined> {
  if (!devAdminApplies(config)) return undefined
  const file = adminCredentialsPath(config)
  const known = readAdminCredentials(config)
  const existing = known && (await findClient(db, known.client_id))
  let credentials: AdminCredentials
  let created = false
  if (known && existing && !existing.disabled) {
    if (known.token_endpoint === tokenEndpoint) return { file, created }
    credentials = { ...known, token_endpoint: tokenEndpoint }
  } else {
    const { client, secret } = await createClient(db, { name: DEV_ADMIN_CLIENT_NAME, isPublic: false, grantTypes: ['client_credentials'], scopes: [ADMIN_SCOPE] })
    credentials = { client_id: client.id, client_secret: secret!, scope: ADMIN_SCOPE, token_endpoint: tokenEndpoint }
    created = true
  }
  // Written beside and renamed: a reader never sees half a file; 0600 from the start.
  const tmp = `${file}.tmp`
  writeFileSync(tmp, JSON.stringify(credentials, null, 2) + '\n', { mode: 0o600 })
  chmodSync(tmp, 0o600)
  renameSync(tmp, file)
  return { file, created }
}

/** The URL of this server's /token for a client on this machine, from the address it listens on. */
export function localTokenEndpoint(address: { address: string; family: string; port: number }): string {
  const host = address.address === '0.0.0.0' ? '127.0.0.1' : address.address === '::' ? '::1' : address.address
  return `http://${address.family === 'IPv6' || host.includes(':') ? `[${host}]` : host}:${address.port}/token`
}
