import { createCipheriv, createDecipheriv, createHash, randomBytes } from 'node:crypto'
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import type { Config } from '../config.js'

/** A key-encryption key: private signing keys are stored only under it. */
export interface Kek {
  readonly id: string
  readonly key: Buffer
}

/** Parses `KEY_ENCRYPTION_KEY`: base64url of 32 bytes, optionally `id:` in front. */
export function parseKek(value: string): Kek {
  const sep = value.indexOf(':')
  const b64 = sep >= 0 ? value.slice(sep + 1) : value
  const key = Buffer.from(b64, 'base64url')
  if (key.length !== 32) throw new Error('KEY_ENCRYPTION_KEY must decode to 32 bytes')
  const id = sep >= 0 ? value.slice(0, sep) : createHash('sha256').update(key).digest('base64url').slice(0, 8)
  return { id, key }
}

/**
 * Development only: a KEK kept in a file of the data folder (created on first use, mode 0600),
 * so that even in development no private key is stored in plaintext.
 */
export function developmentKek(file: string): { kek: Kek; created: boolean } {
  if (existsSync(file)) return { kek: parseKek(readFileSync(file, 'utf8').trim()), created: false }
  mkdirSync(dirname(file), { recursive: true })
  const value = `dev:${randomBytes(32).toString('base64url')}`
  writeFileSync(file, value + '\n', { mode: 0o600, flag: 'wx' })
  chmodSync(file, 0o600)
  return { kek: parseKek(value), created: true }
}

/** AES-256-GCM with a random 96-bit nonce; `aad` binds the ciphertext to its row (the kid). */
export function seal(kek: Kek, plaintext: Buffer, aad: string): Buffer {
  const nonce = randomBytes(12)
  const cipher = createCipheriv('aes-256-gcm', kek.key, nonce)
  cipher.setAAD(Buffer.from(aad, 'utf8'))
  const body = Buffer.concat([cipher.update(plaintext), cipher.final()])
  return Buffer.concat([nonce, body, cipher.getAuthTag()])
}

/** Inverse of `seal`; throws when the ciphertext, the AAD or the KEK is wrong. */
export function open(kek: Kek, sealed: Buffer, aad: string): Buffer {
  if (sealed.length < 12 + 16 + 1) throw new Error('sealed key is too short')
  const decipher = createDecipheriv('aes-256-gcm', kek.key, sealed.subarray(0, 12))
  decipher.setAAD(Buffer.from(aad, 'utf8'))
  decipher.setAuthTag(sealed.subarray(sealed.length - 16))
  return Buffer.concat([decipher.update(sealed.subarray(12, sealed.length - 16)), decipher.final()])
}

/** The current KEK (seals everything new) and earlier ones still accepted for opening. */
export interface KekSet {
  readonly current: Kek
  readonly previous: readonly Kek[]
}

export function kekSet(current: Kek, previous: readonly Kek[] = []): KekSet {
  return { current, previous }
}

/** Opens a sealed key with the KEK whose id the row names; throws when that KEK is unknown or wrong. */
export function openWith(keks: KekSet | Kek, sealed: Buffer, aad: string, kekId: string): Buffer {
  const set = 'current' in keks ? keks : kekSet(keks)
  const kek = [set.current, ...set.previous].find((k) => k.id === kekId)
  if (!kek) throw new Error(`no key-encryption key with id ${kekId} is configured`)
  return open(kek, sealed, aad)
}

/** The key-encryption key: from the environment, or in development a generated key file. */
export function resolveKek(config: Config, warn: (msg: string) => void): Kek {
  if (config.keyEncryptionKey) return parseKek(config.keyEncryptionKey)
  if (config.env === 'production') throw new Error('KEY_ENCRYPTION_KEY is required in production')
  const file = join(config.dataDir, 'dev-key-encryption-key')
  const { kek, created } = developmentKek(file)
  if (created) warn(`DEVELOPMENT ONLY: generated a key-encryption key in ${file}; set KEY_ENCRYPTION_KEY in production`)
  return kek
}

/** The current KEK and the earlier ones (`KEY_ENCRYPTION_KEYS_PREVIOUS`) still accepted for decryption. */
export function resolveKeks(config: Config, current: Kek): KekSet {
  return kekSet(current, config.keyEncryptionKeysPrevious.map(parseKek))
}
