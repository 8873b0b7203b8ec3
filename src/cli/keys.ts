import { readFileSync } from 'node:fs'
import { systemClock } from '../clock.js'
import type { Config } from '../config.js'
import { resolveKek, resolveKeks } from '../keys/kek.js'
import { KeyImportError, prepareImportedKey } from '../keys/key-material.js'
import { parseImportState, parseSigningAlg } from '../keys/key-params.js'
import { importedJson, keyInfoJson, retiredLineJson, revokedJson, rewrappedJson, rotatedJson, scheduledJson } from '../keys/key-view.js'
import { listKeys } from '../keys/keys.store.js'
import { importKey, retireLine, revokeKey, rewrapKeys, rotateKey, scheduleRotation, type KeyOptions } from '../keys/lifecycle.js'
import { keyPolicy } from '../keys/policy.js'
import { CliError, parseCommand, printJson, printList, type CliIo } from './io.js'
import { withChange } from './with-change.js'
import { withDatabase } from './with-db.js'

const USAGE = 'usage: tessera keys list|rotate|revoke|retire-line|import|rewrap'
/** An RFC 7638 SHA-256 thumbprint: 43 base64url characters. */
const KID = /^[A-Za-z0-9_-]{43}$/

/** `tessera keys list|rotate|revoke|retire-line|import|rewrap` (docs/keys.md "Signing keys"). */
export async function keysCommand(config: Config, args: string[], io: CliIo): Promise<number> {
  const [sub, ...rest] = args
  const opts = (): KeyOptions => ({ keks: resolveKeks(config, resolveKek(config, io.err)), policy: keyPolicy(config), nowMs: systemClock.nowMs() })
  switch (sub) {
    case 'list': {
      const o = parseCommand('keys list', rest)
      printList(io, (await withDatabase(config, listKeys)).map(keyInfoJson), o.format)
      return 0
    }
    case 'rotate': {
      const o = parseCommand('keys rotate', rest)
      // --alg names the key line; without it, the SIGNING_ALG line (docs/keys.md "Key lines").
      const alg = parseSigningAlg(o.alg, '--alg')
      const options = opts()
      // `propagation`: which instances applied the change (docs/operations.md "Changes reach every instance").
      const { result, propagation } = await withChange(config, io, async (db) => (o.now ? rotatedJson(await rotateKey(db, options, alg)) : scheduledJson(await scheduleRotation(db, options, alg))))
      printJson(io, { ...result, propagation })
      return 0
    }
    case 'revoke': {
      const [kid, ...more] = rest
      // A kid is an RFC 7638 thumbprint in base64url: it may begin with "-" (one key in 64), so
      // only an argument that is not a kid and looks like an option is taken for one.
      if (kid === undefined || (kid.startsWith('-') && !KID.test(kid))) throw new CliError('usage: tessera keys revoke KID [--reason TEXT]')
      const o = parseCommand('keys revoke', more)
      const options = opts()
      const { result: r, propagation } = await withChange(config, io, (db) => revokeKey(db, options, kid, { reason: o.reason ?? 'cli', actor: { via: 'cli' } }), (r) => !r.found)
      if (!r.found) throw new CliError(`no key ${kid}`)
      printJson(io, { ...revokedJson(kid, r), propagation })
      return 0
    }
    case 'retire-line': {
      const o = parseCommand('keys retire-line', rest)
      const alg = parseSigningAlg(o.alg, '--alg')
      if (alg === undefined) throw new CliError('usage: tessera keys retire-line --alg ALG')
      const options = opts()
      const { result, propagation } = await withChange(config, io, (db) => retireLine(db, options, alg, { actor: { via: 'cli' } }))
      printJson(io, { ...retiredLineJson(result), propagation })
      return 0
    }
    case 'import': {
      const o = parseCommand('keys import', rest)
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
      const { result, propagation } = await withChange(config, io, (db) => importKey(db, options, prepared, state))
      printJson(io, { ...importedJson(result), propagation })
      return 0
    }
    case 'rewrap': {
      parseCommand('keys rewrap', rest)
      const { keks } = opts()
      const { result: r, propagation } = await withChange(config, io, (db) => rewrapKeys(db, keks))
      printJson(io, { ...rewrappedJson(r), propagation })
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
