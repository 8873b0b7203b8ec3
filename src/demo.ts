import { randomBytes } from 'node:crypto'
import { chmodSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { sql } from 'kysely'
import { createClient } from './clients/clients.store.js'
import type { Config } from './config.js'
import type { Db } from './db/schema.js'
import { PasswordHasher } from './users/passwords.js'
import { createUser } from './users/users.store.js'

/**
 * Development on the embedded database only: when it is empty, creates a demo user and a
 * demo client so a first `npm start` can be tried at once. The credentials go to a file of
 * the data folder (mode 0600), never to the log. Never runs in production or on PostgreSQL.
 */
export async function seedDemo(config: Config, db: Db): Promise<string | undefined> {
  if (config.env !== 'development' || config.databaseUrl) return undefined
  const { n } = await db.selectNoFrom(sql<number>`(select count(*) from app_user) + (select count(*) from client)`.as('n')).executeTakeFirstOrThrow()
  if (Number(n) > 0) return undefined
  const password = randomBytes(12).toString('base64url')
  const user = await createUser(db, { username: 'demo', passwordHash: await new PasswordHasher(config.argon2).hash(password) })
  const { client, secret } = await createClient(db, {
    name: 'demo',
    isPublic: false,
    grantTypes: ['client_credentials', 'password', 'refresh_token'],
    scopes: ['openid', 'read', 'write'],
    audience: ['https://api.example.com'],
  })
  const file = join(config.dataDir, 'demo-credentials.json')
  const body = { username: user?.username, password, client_id: client.id, client_secret: secret }
  writeFileSync(file, JSON.stringify(body, null, 2) + '\n', { mode: 0o600 })
  chmodSync(file, 0o600) // `mode` applies only when the file is created
  return file
}
