import { readFileSync } from 'node:fs'
import { resolveKek, resolveKeks } from '../app.js'
import { SIGNING_ALGS, type Config, type SigningAlg } from '../config.js'
import { importKey, keyInfoJson, KeyImportError, listKeys, prepareImportedKey, revokeKey, rewrapKeys, rotateKey, scheduleRotation } from '../keys/keys.store.js'
import { keyPolicy } from '../keys/policy.js'
import { CliError, parseOptions, printJson, type CliIo } from './io.js'
import { withDatabase } from './with-db.js'

const USAGE = 'usage: tessera keys list|rotate|revoke|import|rewrap'
const IMPORT_STATES = ['pending', 'active', 'retired'] as const

function algOption(value: string | undefined): SigningAlg | undefined {
  if (value === undefined) return undefined
  if (!(SIGNING_ALGS as readonly string[]).includes(value)) throw new CliError(`--alg must be one of ${SIGNING_ALGS.join(', ')}`)
  return value as SigningAlg
}

/** `tessera keys list|rotate|revoke|import|rewrap` (README "Signing keys"). */
export async function keysCommand(config: Config, args: string[], io: CliIo): Promise<number> {
  const [sub, ...rest] = args
  const opts = () => ({ now: Date.now(), policy: keyPolicy(config) })
  switch (sub) {
    case 'list': {
      parseOptions(rest, {})
      const keys = await withDatabase(config, listKeys)
      printJson(io, keys.map(keyInfoJson))
      return 0
    }
    case 'rotate': {
      const o = parseOptions(rest, { alg: { type: 'string' }, now: { type: 'boolean' } })
      // Without --alg, the successor keeps the active key's algorithm (README "Signing keys").
      const alg = algOption(o.alg)
      const kek = resolveKek(config, io.err)
      if (o.now) {
        const r = await withDatabase(config, (db) => rotateKey(db, alg, resolveKeks(config, kek), opts()))
        printJson(io, { kid: r.kid, alg: r.alg, state: 'active', retired: r.retired, prepublished: r.prepublished })
        return 0
      }
      const r = await withDatabase(config, (db) => scheduleRotation(db, alg, kek, opts()))
      printJson(io, { kid: r.kid, alg: r.alg, state: r.state, activate_at: r.activateAt, created: r.created, ...(r.withdrawn ? { withdrawn: r.withdrawn } : {}) })
      return 0
    }
    case 'revoke': {
      const [kid, ...more] = rest
      if (kid === undefined || kid.startsWith('-')) throw new CliError('usage: tessera keys revoke KID [--reason TEXT]')
      const o = parseOptions(more, { reason: { type: 'string' } })
      const kek = resolveKek(config, io.err)
      const r = await withDatabase(config, (db) => revokeKey(db, kid, config.signingAlg, resolveKeks(config, kek), { ...opts(), reason: o.reason ?? 'cli', actor: { via: 'cli' } }))
      if (!r.found) throw new CliError(`no key ${kid}`)
      printJson(io, { kid, state: 'revoked', already_revoked: !r.revoked, successor: r.successor ?? null, successor_prepublished: r.successorPrepublished ?? null })
      return 0
    }
    case 'import': {
      const o = parseOptions(rest, { file: { type: 'string' }, alg: { type: 'string' }, state: { type: 'string' } })
      if (o.file === undefined) throw new CliError('keys import needs --file key.pem|key.json')
      const state = o.state ?? 'pending'
      if (!(IMPORT_STATES as readonly string[]).includes(state)) throw new CliError(`--state must be one of ${IMPORT_STATES.join(', ')}`)
      const alg = algOption(o.alg)
      let text: string
      try {
        text = readFileSync(o.file, 'utf8')
      } catch {
        throw new CliError(`cannot read ${o.file}`)
      }
      const kek = resolveKek(config, io.err)
      try {
        let input: { pem?: string; jwk?: unknown }
        if (text.trimStart().startsWith('{')) {
          try {
            input = { jwk: JSON.parse(text) as unknown }
          } catch {
            throw new KeyImportError('the file is not valid JSON')
          }
        } else {
          input = { pem: text }
        }
        const prepared = await prepareImportedKey(input, alg, kek)
        const r = await withDatabase(config, (db) => importKey(db, prepared, state as (typeof IMPORT_STATES)[number], opts()))
        printJson(io, { kid: r.kid, alg: r.alg, state: r.state, retired: r.retired })
        return 0
      } catch (err) {
        if (err instanceof KeyImportError) throw new CliError(err.message)
        throw err
      }
    }
    case 'rewrap': {
      parseOptions(rest, {})
      const keks = resolveKeks(config, resolveKek(config, io.err))
      const r = await withDatabase(config, (db) => rewrapKeys(db, keks))
      printJson(io, { kek_id: r.kekId, rewrapped: r.rewrapped, unchanged: r.unchanged, failed: r.failed })
      if (r.failed.length > 0) {
        io.err(`tessera: ${r.failed.length} key(s) open with no configured KEK (list the KEK that sealed them in KEY_ENCRYPTION_KEYS_PREVIOUS): ${r.failed.join(', ')}`)
        return 1
      }
      return 0
    }
    default:
      throw new CliError(USAGE)
  }
}
