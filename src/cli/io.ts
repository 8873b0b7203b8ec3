import { parseArgs, type ParseArgsConfig } from 'node:util'
import type { Env } from '../config.js'
import { InputError } from '../errors.js'

/** What a command may touch: injectable so tests run commands in-process. */
export interface CliIo {
  env: Env
  out(line: string): void
  err(line: string): void
  readStdin(): Promise<string>
}

/** A usage error: exit code 2 and the message (like every InputError). */
export class CliError extends InputError {}

/** Strict option parsing: unknown options and stray arguments are errors. */
export function parseOptions<T extends NonNullable<ParseArgsConfig['options']>>(args: string[], options: T) {
  try {
    return parseArgs({ args, options, strict: true, allowPositionals: false }).values
  } catch (err) {
    throw new CliError((err as Error).message)
  }
}

/** Splits `a,b c` into ['a', 'b', 'c']. */
export function list(value: string | undefined): string[] {
  return value === undefined ? [] : value.split(/[\s,]+/).filter((s) => s !== '')
}

export function printJson(io: CliIo, value: unknown): void {
  io.out(JSON.stringify(value, null, 2))
}
