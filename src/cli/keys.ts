import { readFileSync } from 'node:fs'
import { systemClock } from '../clock.js'
import type { Config } from '../config.js'
import { resolveKek, resolveKeks } from '../keys/kek.js'
import { KeyImportError, prepareImportedKey } from '../keys/key-material.js'
import { parseImportState, parseSigningAlg } from '../keys/key-params.js'
import { importedJson, keyInfoJson, revokedJson, rewrappedJson, rotatedJson, scheduledJson } from '../keys/key-view.js'
import { listKeys } from '../keys/keys.store.js'
import { importKey, revokeKey, rewrapKeys, rotateKey, scheduleRotation, type KeyOptions } from '../keys/lifecycle.js'
import { keyPolicy } from '../keys/policy.js'
import { CliError, parseOptions, printJson, type CliIo } from './io.js'
import { withDatabase } from './with-db.js'

const USAGE = 'usage: tessera keys list|rotate|revoke|import|rewrap'

/** `tessera keys list|rotate|revoke|import|rewrap` (README "Signing keys"). */
export async function keysCommand(config: Config, args: string[], io: CliIo): Promise<number> {
  const [sub, ...rest] = args
  const opts = (): KeyOptions => ({ keks: resolveKeks(config, resolveKek(config, io.err)), policy: keyPolicy(config), nowMs: systemClock.nowMs() })
  switch (sub) {
    case 'list': {
      parseOptions(rest, {})
      printJson(io, (await withDatabase(config, listKeys)).map(keyInfoJson))
      return 0
    }
    case 'rotate': {
      const o = parseOptions(rest, { alg: { type: 'string' }, now: { type: 'boolean' } })
      // Without --alg, the successor keeps the active key's algorithm (README "Signing keys").
      const alg = parseSigningAlg(o.alg, '--alg')
      const options = opts()
      printJson(io, o.now ? rotatedJson(await withDatabase(config, (db) => rotateKey(db, options, alg))) : scheduledJson(await withDatabase(config, (db) => scheduleRotation(db, options, alg))))
      return 0
    }
    case 'revoke': {
      const [kid, ...more] = rest
      if (kid === undefined || kid.startsWith('-')) throw new CliError('usage: tessera keys revoke KID [--reason TEXT]')
      const o = parseOptions(more, { reason: { type: 'string' } })
      const options = opts()
      const r = await withDatabase(config, (db) => revokeKey(db, options, kid, { reason: o.reason ?? 'cli', actor: { via: 'cli' } }))
      if (!r.found) throw new CliError(`no key ${kid}`)
      printJson(io, revokedJson(kid, r))
      return 0
    }
    case 'import': {
      const o = parseOptions(rest, { file: { type: 'string' }, alg: { type: 'string' }, state: { type: 'string' } })
      if (o.file === undefined) throw new CliError('keys import needs --file key.pem|key.json')
      const state = parseImportState(o.state, '--state')
      const alg = parseSigningAlg(o.alg, '--alg')
      let text: string
      try {
        text = readFileSync(o.file, 'utf8')
      } catch {
        throw new CliError(`cannot read ${o.file}`)
      }
      const options = opts()
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
      const prepared = await prepareImportedKey(input, alg, options.keks.current)
      printJson(io, importedJson(await withDatabase(config, (db) => importKey(db, options, prepared, state))))
      return 0
    }
    case 'rewrap': {
      parseOptions(rest, {})
      const { keks } = opts()
      const r = await withDatabase(config, (db) => rewrapKeys(db, keks))
      printJson(io, rewrappedJson(r))
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
