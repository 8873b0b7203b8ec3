// Every `tessera` command, its options and examples: one table that parses the arguments, prints
// `--help`, suggests the closest option or command on a typo, and is checked by the CLI tests
// (each command answers `--help`; the README lists each command).

/** One option: how it is written, what it means, and its default when left out. */
export interface OptionSpec {
  readonly type: 'string' | 'boolean'
  /** The placeholder shown after a string option (`--username U`). */
  readonly value?: string
  readonly description: string
  /** What applies when the option is left out (shown in the help). */
  readonly default?: string
  /** Shown as required in the help; the command itself checks it and says so (exit 2). */
  readonly required?: boolean
}

/** One command (`users create`) or single-word command (`migrate`). */
export interface CommandSpec {
  readonly summary: string
  /** A longer explanation, shown in the command's help. */
  readonly details?: string
  /** A positional argument (`keys revoke KID`). */
  readonly positional?: { readonly name: string; readonly description: string }
  readonly options: Readonly<Record<string, OptionSpec>>
  readonly examples: readonly string[]
  /** Changes what running instances cache: waits for them, and takes `--wait S`. */
  readonly change?: boolean
  /** Prints a list: `--format json|table`. */
  readonly list?: boolean
}

const WAIT: OptionSpec = { type: 'string', value: 'S', description: 'wait at most S seconds (0–300) for every running instance to apply the change', default: 'PROPAGATION_WAIT_SECONDS' }
const FORMAT: OptionSpec = { type: 'string', value: 'json|table', description: 'json for scripts, table for people', default: 'json' }
const USERNAME: OptionSpec = { type: 'string', value: 'U', description: 'the user, by username', required: true }

const table = {
  migrate: {
    summary: 'apply the database migrations this version needs',
    details: 'Safe to run on a live database and from several places at once (a migration lock).',
    options: {},
    examples: ['DATABASE_URL=postgres://tessera@db/tessera tessera migrate'],
  },
  serve: {
    summary: 'start the HTTP server (until SIGTERM or SIGINT)',
    details: 'Configuration comes from the environment (.env.example lists every variable).',
    options: {},
    examples: ['tessera serve', 'NODE_ENV=production DATABASE_URL=postgres://… ISSUER=https://auth.example.com KEY_ENCRYPTION_KEY=… tessera serve'],
  },
  doctor: {
    summary: 'check this deployment: configuration, database, schema, KEK, key lines, clock, issuer, JWKS',
    details: 'Exit code 1 when a check fails.',
    options: { format: { type: 'string', value: 'text|json', description: 'text for people, json for scripts', default: 'text' } },
    examples: ['tessera doctor', 'tessera doctor --format json'],
  },
  'users create': {
    summary: 'create a user',
    details: 'The password is read from standard input, never from the command line (shell history, ps); it must follow the password rules (README "Brute force and abuse").',
    options: {
      username: { type: 'string', value: 'U', description: 'the login name: letters, digits and . _ @ + - (at most 256), stored after Unicode NFKC and lower-casing', required: true },
      'password-stdin': { type: 'boolean', description: 'read the password from standard input (required)', required: true },
      roles: { type: 'string', value: 'a,b', description: 'roles, comma-separated', default: 'none' },
      name: { type: 'string', value: 'N', description: 'display name (the `name` claim)' },
      email: { type: 'string', value: 'E', description: 'e-mail address (the `email` claim)' },
      'email-verified': { type: 'boolean', description: 'the e-mail address is verified', default: 'false' },
    },
    examples: ["printf '%s' 'a long passphrase' | tessera users create --username alice --password-stdin --name 'Alice A' --email alice@example.com --email-verified"],
  },
  'users update': {
    summary: "change a user's profile attributes",
    options: {
      username: USERNAME,
      name: { type: 'string', value: 'N', description: "display name ('' clears it)" },
      email: { type: 'string', value: 'E', description: "e-mail address ('' clears it)" },
      'email-verified': { type: 'string', value: 'true|false', description: 'whether the e-mail address is verified' },
    },
    examples: ["tessera users update --username alice --email alice@example.org --email-verified false"],
  },
  'users list': {
    summary: 'list the users',
    options: {},
    examples: ['tessera users list', 'tessera users list --format table'],
    list: true,
  },
  'users disable': {
    summary: 'disable a user: revokes its refresh-token families; its SSO sessions stop working',
    options: { username: USERNAME },
    examples: ['tessera users disable --username alice'],
    change: true,
  },
  'clients create': {
    summary: 'register a client; its secret is printed this once',
    options: {
      name: { type: 'string', value: 'N', description: 'a name for people (shown on the consent page)', required: true },
      public: { type: 'boolean', description: 'a public client (no secret: browser and mobile apps)', default: 'confidential' },
      'grant-types': { type: 'string', value: 'g1,g2', description: 'client_credentials, password, refresh_token, authorization_code', required: true },
      scopes: { type: 'string', value: 's1,s2', description: 'the scopes it may ask for', default: 'none' },
      audience: { type: 'string', value: 'a1,a2', description: 'the aud of its access tokens', default: 'the issuer' },
      'refresh-delivery': { type: 'string', value: 'body|cookie', description: 'where refresh tokens go', default: 'cookie for a public client with --allowed-origins, else body' },
      'allowed-origins': { type: 'string', value: 'o1,o2', description: 'browser origins allowed to call it (CORS)', default: 'none' },
      'id-token-signed-response-alg': { type: 'string', value: 'RS256|ES256|PS256|EdDSA', description: 'the key line of its ID tokens', default: 'RS256' },
      'rate-limit': { type: 'string', value: 'N', description: '/token requests per second on each instance (0 = no limit)', default: 'CLIENT_RATE_LIMIT_PER_SECOND' },
      'redirect-uris': { type: 'string', value: 'u1,u2', description: 'registered redirect URIs, compared exactly (needed by authorization_code)' },
      'post-logout-redirect-uris': { type: 'string', value: 'u1,u2', description: 'where RP-initiated logout may send the browser back to' },
      'first-party': { type: 'boolean', description: 'skip the consent page', default: 'false' },
      'backchannel-logout-uri': { type: 'string', value: 'U', description: 'where back-channel logout tokens are POSTed' },
      'require-par': { type: 'boolean', description: 'its authorization requests must be pushed (/par)', default: 'false' },
    },
    examples: [
      'tessera clients create --name api --grant-types client_credentials --scopes read,write --audience https://api.example.com',
      'tessera clients create --name photos --grant-types authorization_code,refresh_token --scopes openid,profile --redirect-uris https://photos.example.com/cb',
    ],
  },
  'clients list': {
    summary: 'list the clients (never their secrets)',
    options: {},
    examples: ['tessera clients list --format table'],
    list: true,
  },
  'clients disable': {
    summary: 'disable a client: revokes every refresh-token family of it',
    options: { id: { type: 'string', value: 'ID', description: 'the client_id', required: true } },
    examples: ['tessera clients disable --id c_abc123'],
    change: true,
  },
  'clients rotate-secret': {
    summary: "give a confidential client a new secret, printed this once; the old one works for an overlap",
    details: 'The replaced secret keeps authenticating for the overlap, then stops; a secret replaced by an earlier rotation stops at once. Same as POST /admin/clients/{id}/secret (docs/admin-clients.md).',
    positional: { name: 'ID', description: 'the client_id' },
    options: { overlap: { type: 'string', value: 'SECONDS', description: 'how long the old secret keeps working (0 = it stops at once; at most 2592000)', default: 'CLIENT_SECRET_OVERLAP_SECONDS' } },
    examples: ['tessera clients rotate-secret c_abc123', 'tessera clients rotate-secret c_abc123 --overlap 0'],
    change: true,
  },
  'keys list': {
    summary: 'list the signing keys with their state and dates',
    options: {},
    examples: ['tessera keys list --format table'],
    list: true,
  },
  'keys rotate': {
    summary: 'rotate a key line: schedule the next key, or --now',
    options: {
      alg: { type: 'string', value: 'ES256|RS256|PS256|EdDSA', description: 'the key line', default: 'SIGNING_ALG' },
      now: { type: 'boolean', description: 'activate the successor now instead of scheduling it', default: 'false' },
    },
    examples: ['tessera keys rotate', 'tessera keys rotate --alg RS256 --now'],
    change: true,
  },
  'keys revoke': {
    summary: 'revoke a key at once (compromise): its tokens stop verifying, a successor takes over',
    positional: { name: 'KID', description: 'the key id (an RFC 7638 thumbprint)' },
    options: { reason: { type: 'string', value: 'TEXT', description: 'why, for the audit trail', default: 'cli' } },
    examples: ['tessera keys revoke 3p0Vw… --reason "laptop lost"'],
    change: true,
  },
  'keys retire-line': {
    summary: 'stop signing with a key line (its keys retire; nothing new is signed with it)',
    options: { alg: { type: 'string', value: 'A', description: 'the key line', required: true } },
    examples: ['tessera keys retire-line --alg PS256'],
    change: true,
  },
  'keys import': {
    summary: 'import a private key (PEM or JWK)',
    options: {
      file: { type: 'string', value: 'key.pem|key.json', description: 'the key file', required: true },
      alg: { type: 'string', value: 'A', description: 'its algorithm', default: 'from the key' },
      state: { type: 'string', value: 'pending|active|retired', description: 'its state', default: 'pending' },
    },
    examples: ['tessera keys import --file old-key.pem --state retired'],
    change: true,
  },
  'keys rewrap': {
    summary: 'seal every private key with the current KEY_ENCRYPTION_KEY',
    options: {},
    examples: ['KEY_ENCRYPTION_KEYS_PREVIOUS=old:… KEY_ENCRYPTION_KEY=new:… tessera keys rewrap'],
    change: true,
  },
  'sessions list': {
    summary: "list a user's refresh-token families (sessions)",
    options: { username: USERNAME, all: { type: 'boolean', description: 'also the revoked and expired ones', default: 'live only' } },
    examples: ['tessera sessions list --username alice --format table'],
    list: true,
  },
  'sessions revoke': {
    summary: 'revoke one refresh-token family',
    options: { id: { type: 'string', value: 'FAMILY', description: 'the family id', required: true } },
    examples: ['tessera sessions revoke --id 0d3c…'],
  },
  'sessions revoke-all': {
    summary: "revoke every refresh-token family of a user",
    options: { username: USERNAME },
    examples: ['tessera sessions revoke-all --username alice'],
  },
  'sso-sessions list': {
    summary: "list a user's SSO sessions (browser sign-ins)",
    options: { username: USERNAME, all: { type: 'boolean', description: 'also the ended ones', default: 'live only' } },
    examples: ['tessera sso-sessions list --username alice'],
    list: true,
  },
  'sso-sessions revoke': {
    summary: 'end one SSO session: revokes its families, back-channel logout to its clients',
    options: { id: { type: 'string', value: 'SID', description: 'the session id (the sid claim)', required: true } },
    examples: ['tessera sso-sessions revoke --id 6f1e…'],
  },
  'sso-sessions revoke-all': {
    summary: "end every SSO session of a user",
    options: { username: USERNAME },
    examples: ['tessera sso-sessions revoke-all --username alice'],
  },
  'consents list': {
    summary: "list a user's remembered consents",
    options: { username: USERNAME },
    examples: ['tessera consents list --username alice'],
    list: true,
  },
  'consents revoke': {
    summary: "forget a user's consents (the consent page shows again)",
    options: { username: USERNAME, client: { type: 'string', value: 'C', description: 'only this client', default: 'every client' } },
    examples: ['tessera consents revoke --username alice --client c_abc123'],
  },
  'audit list': {
    summary: 'list audit events, newest first, one page',
    options: {
      type: { type: 'string', value: 'T', description: 'an event type, or a prefix ending in a dot (login.)' },
      username: { type: 'string', value: 'U', description: 'events of this user' },
      family: { type: 'string', value: 'F', description: 'events of this refresh-token family' },
      client: { type: 'string', value: 'C', description: 'events of this client' },
      since: { type: 'string', value: 'ISO', description: 'at or after this time' },
      until: { type: 'string', value: 'ISO', description: 'before this time' },
      limit: { type: 'string', value: 'N', description: 'events per page (1–500)', default: '100' },
      cursor: { type: 'string', value: 'ID', description: 'the last id of the previous page' },
    },
    examples: ['tessera audit list --type refresh_token. --since 2026-12-01T00:00:00Z --format table'],
    list: true,
  },
  'housekeeping run': {
    summary: 'delete dead sessions, denylist entries, expired requests and old audit rows now',
    options: {},
    examples: ['tessera housekeeping run'],
  },
  'dev admin-token': {
    summary: 'print an admin access token of the running development server (embedded database)',
    details: 'Development only (refused in production): a development server on the embedded database registers an admin client (scope tessera:admin) on its first start and writes its credentials to DATA_DIR/admin-credentials.json (mode 0600); this command asks that server for a client_credentials token with them and prints the access token alone, for T=$(tessera dev admin-token). See docs/embedded.md.',
    options: {},
    examples: ['tessera dev admin-token', 'T=$(npx tessera dev admin-token) && curl -H "authorization: Bearer $T" http://localhost:8080/admin/keys'],
  },
  'throttle show': {
    summary: 'show the password-check counters and locks of an account or an address',
    options: { username: { type: 'string', value: 'U', description: 'an account' }, address: { type: 'string', value: 'A', description: 'an IP address (IPv6: its /64)' } },
    examples: ['tessera throttle show --username alice', 'tessera throttle show --address 203.0.113.7'],
  },
  'throttle clear': {
    summary: 'clear the counters and locks of an account or an address',
    options: { username: { type: 'string', value: 'U', description: 'an account' }, address: { type: 'string', value: 'A', description: 'an IP address (IPv6: its /64)' } },
    examples: ['tessera throttle clear --username alice'],
  },
} as const satisfies Record<string, CommandSpec>

export type CommandName = keyof typeof table
export const COMMANDS: Readonly<Record<CommandName, CommandSpec>> = table

/** The option values of a command, typed from its table entry. */
export type OptionValues<N extends CommandName> = {
  -readonly [K in keyof (typeof table)[N]['options']]?: (typeof table)[N]['options'][K] extends { type: 'boolean' } ? boolean : string
}

/** The first words of every command (`users`, `migrate`, …), in table order. */
export function topLevel(): string[] {
  return [...new Set(Object.keys(COMMANDS).map((n) => n.split(' ')[0]!))]
}

/** The commands under a first word (`users` → `users create`, …). */
export function subcommands(word: string): CommandName[] {
  return (Object.keys(COMMANDS) as CommandName[]).filter((n) => n.startsWith(`${word} `))
}

/** Damerau–Levenshtein distance (optimal string alignment), for "did you mean". */
function distance(a: string, b: string): number {
  const d = Array.from({ length: a.length + 1 }, (_, i) => [i, ...Array<number>(b.length).fill(0)])
  for (let j = 1; j <= b.length; j++) d[0]![j] = j
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1
      d[i]![j] = Math.min(d[i - 1]![j]! + 1, d[i]![j - 1]! + 1, d[i - 1]![j - 1]! + cost)
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) d[i]![j] = Math.min(d[i]![j]!, d[i - 2]![j - 2]! + 1)
    }
  }
  return d[a.length]![b.length]!
}

/** The closest of `candidates` to `word`, when one is close enough to be what was meant. */
export function closest(word: string, candidates: readonly string[]): string | undefined {
  let best: string | undefined
  let bestDistance = Infinity
  for (const c of candidates) {
    const dist = c.startsWith(word) && word.length >= 2 ? 0.5 : distance(word, c)
    if (dist < bestDistance) {
      best = c
      bestDistance = dist
    }
  }
  return best !== undefined && bestDistance <= Math.max(2, Math.floor(word.length / 3)) ? best : undefined
}

/** Every option a command takes, with the ones every command of its kind shares. */
export function allOptions(name: CommandName): Record<string, OptionSpec> {
  const spec = COMMANDS[name]
  return { ...spec.options, ...(spec.change ? { wait: WAIT } : {}), ...(spec.list ? { format: FORMAT } : {}) }
}

const EXIT_CODES = 'exit codes: 0 success, 1 failure (the database, a check), 2 usage (a bad command, option or value)'

/** `tessera NAME --help`. */
export function commandHelp(name: CommandName): string {
  const spec = COMMANDS[name]
  const options = allOptions(name)
  const required = Object.entries(spec.options).filter(([, o]) => o.required).map(([k, o]) => `--${k}${o.type === 'string' ? ` ${o.value ?? 'V'}` : ''}`)
  const usage = ['tessera', name, ...(spec.positional ? [spec.positional.name] : []), ...required, ...(Object.keys(options).length > required.length ? ['[options]'] : [])].join(' ')
  const rows = Object.entries(options).map(([k, o]) => {
    const flag = `--${k}${o.type === 'string' ? ` ${o.value ?? 'V'}` : ''}`
    const notes = [o.required ? 'required' : undefined, o.default !== undefined ? `default: ${o.default}` : undefined].filter(Boolean)
    return [flag, `${o.description}${notes.length > 0 ? ` (${notes.join('; ')})` : ''}`] as const
  })
  rows.push(['-h, --help', 'show this help'])
  // A long flag takes its own line, so that descriptions stay in one narrow column.
  const width = Math.min(26, Math.max(...rows.map(([f]) => f.length)) + 2)
  const row = (f: string, d: string) => (f.length + 2 > width ? `  ${f}\n  ${' '.repeat(width)}${d}` : `  ${f.padEnd(width)}${d}`)
  const lines = [`tessera ${name}: ${spec.summary}`, '', `usage: ${usage}`]
  if (spec.details) lines.push('', spec.details)
  if (spec.positional) lines.push('', 'arguments:', row(spec.positional.name, spec.positional.description))
  lines.push('', 'options:', ...rows.map(([f, d]) => row(f, d)))
  lines.push('', 'examples:', ...spec.examples.map((e) => `  ${e}`), '', EXIT_CODES)
  return lines.join('\n')
}

/** `tessera users --help`: the commands under one word. */
export function groupHelp(word: string): string {
  const names = subcommands(word)
  const width = Math.max(...names.map((n) => n.length)) + 2
  return [`usage: tessera ${word} <command> [options]`, '', 'commands:', ...names.map((n) => `  ${n.padEnd(width)}${COMMANDS[n].summary}`), '', `tessera ${word} <command> --help shows the options of one.`, '', EXIT_CODES].join('\n')
}

/** `tessera --help`. */
export function mainHelp(): string {
  const names = Object.keys(COMMANDS) as CommandName[]
  const width = Math.max(...names.map((n) => n.length)) + 2
  return [
    'usage: tessera <command> [options]',
    '',
    'commands:',
    ...names.map((n) => `  ${n.padEnd(width)}${COMMANDS[n].summary}`),
    '',
    'global options:',
    '  -h, --help       show help (after a command: its options, defaults and examples)',
    '  -V, --version    print the version',
    '',
    'Output is JSON (for scripts); lists also print a table with --format table.',
    'Commands that change keys, clients or users wait until every running instance has applied the',
    'change, at most --wait seconds (default PROPAGATION_WAIT_SECONDS), and say which confirmed.',
    'Configuration comes from the environment (.env.example lists every variable).',
    '',
    EXIT_CODES,
  ].join('\n')
}
