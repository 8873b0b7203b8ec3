// Validation of key-operation inputs, shared by the admin API (`alg`, 400) and the CLI (`--alg`, exit 2).
import { SIGNING_ALGS, type SigningAlg } from '../config.js'
import { InputError } from '../errors.js'

export const IMPORT_STATES = ['pending', 'active', 'retired'] as const
export type ImportState = (typeof IMPORT_STATES)[number]

/** A signing algorithm Tessera makes keys for, or undefined when absent. */
export function parseSigningAlg(value: unknown, name: string): SigningAlg | undefined {
  if (value === undefined) return undefined
  if (typeof value !== 'string' || !(SIGNING_ALGS as readonly string[]).includes(value)) throw new InputError(`${name} must be one of ${SIGNING_ALGS.join(', ')}`)
  return value as SigningAlg
}

/** The state an imported key takes; `pending` when absent (or JSON null). */
export function parseImportState(value: unknown, name: string): ImportState {
  if (value === undefined || value === null) return 'pending'
  if (!(IMPORT_STATES as readonly unknown[]).includes(value)) throw new InputError(`${name} must be one of ${IMPORT_STATES.join(', ')}`)
  return value as ImportState
}
