import type { Config } from '../config.js'
import { adminCredentialsPath, readAdminCredentials } from '../dev-admin.js'
import { CliError, parseCommand, type CliIo } from './io.js'

/** How long the command waits for the development server's /token. */
const TOKEN_TIMEOUT_MS = 10_000

/**
 * `tessera dev admin-token`: an admin access token from the running development server, with the
 * development admin client it registered in DATA_DIR/admin-credentials.json (docs/embedded.md).
 * Prints the token alone. Development on the embedded database only.
 */
export async function devCommand(config: Config, args: string[], io: CliIo): Promise<number> {
  const [sub, ...rest] = args
  if (sub !== 'admin-token') throw new CliError('usage: tessera dev admin-token')
  parseCommand('dev admin-token', rest)
  if (config.env === 'production') {
    throw new CliError('dev admin-token is for development and is refused in production: register an admin client with `tessera clients create --name ops --grant-types client_credentials --scopes tessera:admin` and get its tokens from /token (docs/embedded.md)')
  }
  if (config.env !== 'development') throw new CliError(`dev admin-token is for development (NODE_ENV=development; this is ${config.env})`)
  if (config.databaseUrl !== undefined) {
    throw new CliError('dev admin-token needs the embedded database (no DATABASE_URL): on PostgreSQL, register an admin client with `tessera clients create --grant-types client_credentials --scopes tessera:admin`')
  }
  const file = adminCredentialsPath(config)
  const credentials = readAdminCredentials(config)
  if (!credentials) throw new Error(`no development admin credentials in ${file}: start the development server (npm start) with this DATA_DIR; it writes them when it starts`)
  let res: Response
  try {
    res = await fetch(credentials.token_endpoint, {
      method: 'POST',
      headers: {
        'content-type': 'application/x-www-form-urlencoded',
        authorization: `Basic ${Buffer.from(`${encodeURIComponent(credentials.client_id)}:${encodeURIComponent(credentials.client_secret)}`).toString('base64')}`,
      },
      body: new URLSearchParams({ grant_type: 'client_credentials', scope: credentials.scope }).toString(),
      signal: AbortSignal.timeout(TOKEN_TIMEOUT_MS),
    })
  } catch (err) {
    const cause = (err as { cause?: { code?: string } }).cause?.code ?? (err as Error).message
    throw new Error(`the development server does not answer at ${credentials.token_endpoint} (${cause}): start it with npm start (the address is the one it wrote to ${file})`)
  }
  const body = (await res.json().catch(() => ({}))) as { access_token?: unknown; error?: unknown; error_description?: unknown }
  if (res.status !== 200 || typeof body.access_token !== 'string') {
    const why = typeof body.error === 'string' ? `${body.error}${typeof body.error_description === 'string' ? `: ${body.error_description}` : ''}` : `HTTP ${res.status}`
    const hint = body.error === 'invalid_client' ? `; the client in ${file} is not known to this server (another DATA_DIR, or deleted): restart the development server to register a new one` : ''
    throw new Error(`the development server refused the admin client (${why})${hint}`)
  }
  io.out(body.access_token)
  return 0
}
