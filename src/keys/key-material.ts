import { createPrivateKey, createPublicKey, type KeyObject } from 'node:crypto'
import { calculateJwkThumbprint, exportJWK, generateKeyPair, type JWK } from 'jose'
import { SIGNING_ALGS, type SigningAlg } from '../config.js'
import type { SigningKeyRow } from '../db/schema.js'
import { InputError } from '../errors.js'
import { openWith, seal, type Kek, type KekSet } from './kek.js'

/** A key ready to be stored: public JWK, sealed private JWK (empty for a public-only import). */
export interface PreparedKey {
  kid: string
  alg: SigningAlg
  publicJwk: JWK
  privateKeyEnc: Buffer
  kekId: string
}

/** The stored private part of a key that never signs again (retired, removed, revoked): destroyed. */
export const DESTROYED = Buffer.alloc(0)

/** Generates a key pair for `alg`; kid is its RFC 7638 thumbprint. */
export async function generateSigningKey(alg: SigningAlg, kek: Kek): Promise<PreparedKey> {
  const { publicKey, privateKey } = await generateKeyPair(alg, { extractable: true, ...(alg === 'RS256' || alg === 'PS256' ? { modulusLength: 2048 } : {}) })
  const publicJwk = await exportJWK(publicKey)
  const kid = await calculateJwkThumbprint(publicJwk, 'sha256')
  const privateJwk: JWK = await exportJWK(privateKey)
  return {
    kid,
    alg,
    publicJwk: { ...publicJwk, kid, alg, use: 'sig' } as JWK,
    privateKeyEnc: seal(kek, Buffer.from(JSON.stringify(privateJwk), 'utf8'), kid),
    kekId: kek.id,
  }
}

/** A key that cannot be imported; the message is safe to show (no key material). */
export class KeyImportError extends InputError {}

/**
 * Prepares an existing key (PEM or JWK, private or public-only) for import: the algorithm is
 * `alg`, else the JWK's own `alg`, else the one its type implies (RSA → RS256). Only the key
 * types Tessera signs with are accepted: RSA ≥ 2048 bits, P-256, Ed25519.
 */
export async function prepareImportedKey(input: { pem?: string | undefined; jwk?: unknown }, alg: SigningAlg | undefined, kek: Kek): Promise<PreparedKey> {
  let privateKey: KeyObject | undefined
  let publicKey: KeyObject
  let jwkAlg: unknown
  try {
    if (input.pem !== undefined) {
      if (/-----BEGIN [A-Z ]*PRIVATE KEY-----/.test(input.pem)) {
        privateKey = createPrivateKey({ key: input.pem, format: 'pem' })
        publicKey = createPublicKey(privateKey)
      } else {
        publicKey = createPublicKey({ key: input.pem, format: 'pem' })
      }
    } else {
      const jwk = input.jwk
      if (typeof jwk !== 'object' || jwk === null || Array.isArray(jwk)) throw new KeyImportError('the JWK must be a JSON object')
      const j = jwk as Record<string, unknown>
      if (j.kty === 'oct') throw new KeyImportError('symmetric (oct) keys cannot sign tokens here')
      if (j.use !== undefined && j.use !== 'sig') throw new KeyImportError('the JWK is not a signing key (use is not "sig")')
      jwkAlg = j.alg
      if (typeof j.d === 'string') {
        privateKey = createPrivateKey({ key: j as never, format: 'jwk' })
        publicKey = createPublicKey(privateKey)
      } else {
        publicKey = createPublicKey({ key: j as never, format: 'jwk' })
      }
    }
  } catch (err) {
    if (err instanceof KeyImportError) throw err
    throw new KeyImportError('not a readable PEM or JWK key')
  }
  const details = publicKey.asymmetricKeyDetails ?? {}
  const type = publicKey.asymmetricKeyType
  const implied: SigningAlg | undefined = type === 'rsa' ? 'RS256' : type === 'ec' && details.namedCurve === 'prime256v1' ? 'ES256' : type === 'ed25519' ? 'EdDSA' : undefined
  if (!implied) throw new KeyImportError('unsupported key type: use RSA (2048 bits or more), EC P-256 or Ed25519')
  if (jwkAlg !== undefined && !(SIGNING_ALGS as readonly unknown[]).includes(jwkAlg)) throw new KeyImportError(`the JWK's alg must be one of ${SIGNING_ALGS.join(', ')}`)
  const chosen = alg ?? (jwkAlg as SigningAlg | undefined) ?? implied
  if (jwkAlg !== undefined && alg !== undefined && jwkAlg !== alg) throw new KeyImportError(`the JWK says alg ${String(jwkAlg)}, not ${alg}`)
  const fits = chosen === implied || (chosen === 'PS256' && implied === 'RS256')
  if (!fits) throw new KeyImportError(`a ${type === 'rsa' ? 'RSA' : type === 'ec' ? 'P-256' : 'Ed25519'} key cannot be used with ${chosen}`)
  if (type === 'rsa' && (details.modulusLength ?? 0) < 2048) throw new KeyImportError('RSA keys must have at least 2048 bits')

  const exported = await exportJWK(publicKey)
  const publicMembers: JWK = type === 'rsa' ? { kty: 'RSA', n: exported.n!, e: exported.e! } : type === 'ec' ? { kty: 'EC', crv: exported.crv!, x: exported.x!, y: exported.y! } : { kty: 'OKP', crv: exported.crv!, x: exported.x! }
  const kid = await calculateJwkThumbprint(publicMembers, 'sha256')
  const privateJwk = privateKey ? (privateKey.export({ format: 'jwk' }) as JWK) : undefined
  return {
    kid,
    alg: chosen,
    publicJwk: { ...publicMembers, kid, alg: chosen, use: 'sig' },
    privateKeyEnc: privateJwk ? seal(kek, Buffer.from(JSON.stringify(privateJwk), 'utf8'), kid) : DESTROYED,
    kekId: kek.id,
  }
}

type Sealed = Pick<SigningKeyRow, 'kid' | 'kek_id' | 'private_key_enc'>

/** The private JWK of a row (keyring only); throws without key material in the message. */
export function openPrivateJwk(keks: KekSet, row: Sealed): JWK {
  return JSON.parse(openWith(keks, Buffer.from(row.private_key_enc), row.kid, row.kek_id).toString('utf8')) as JWK
}

/** Whether the sealed private key of `row` opens with one of `keks` (a pending key about to sign). */
export function opensWith(keks: KekSet, row: Sealed): boolean {
  try {
    openPrivateJwk(keks, row)
    return true
  } catch {
    return false
  }
}

/** Re-seals a row's private key under the current KEK; undefined when no configured KEK opens it. */
export function reseal(keks: KekSet, row: Sealed): Buffer | undefined {
  let plaintext: Buffer
  try {
    plaintext = openWith(keks, Buffer.from(row.private_key_enc), row.kid, row.kek_id)
  } catch {
    return undefined
  }
  const resealed = seal(keks.current, plaintext, row.kid)
  plaintext.fill(0)
  return resealed
}
