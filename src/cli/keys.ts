import { resolveKek } from '../app.js'
import { SIGNING_ALGS, type Config, type SigningAlg } from '../config.js'
import { listKeys, rotateKey } from '../keys/keys.store.js'
import { CliError, parseOptions, printJson, type CliIo } from './io.js'
import { withDatabase } from './with-db.js'

/** `tessera keys list|rotate`. */
export async function keysCommand(config: Config, args: string[], io: CliIo): Promise<number> {
  const [sub, ...rest] = args
  switch (sub) {
    case 'list': {
      parseOptions(rest, {})
      const keys = await withDatabase(config, listKeys)
      printJson(io, keys.map((k) => ({ kid: k.kid, alg: k.alg, state: k.state, created_at: k.createdAt, activated_at: k.activatedAt, retired_at: k.retiredAt, revoked_at: k.revokedAt })))
      return 0
    }
    case 'rotate': {
      const o = parseOptions(rest, { alg: { type: 'string' } })
      const alg = (o.alg ?? config.signingAlg) as SigningAlg
      if (!SIGNING_ALGS.includes(alg)) throw new CliError(`--alg must be one of ${SIGNING_ALGS.join(', ')}`)
      const kek = resolveKek(config, io.err)
      const result = await withDatabase(config, (db) => rotateKey(db, alg, kek))
      printJson(io, { kid: result.kid, alg, state: 'active', retired: result.retired })
      return 0
    }
    default:
      throw new CliError('usage: tessera keys list|rotate')
  }
}
