import { parseArgs, type ParseArgsConfig } from 'node:util'
import type { Env } from '../config.js'
import { InputError } from '../errors.js'
import { allOptions, closest, type CommandName, type OptionValues } from './commands.js'

/** What a command may touch: injectable so tests run commands in-process. */
export interface CliIo {
  env: Env
  out(line: string): void
  err(line: string): void
  readStdin(): Promise<string>
}

/** A usage error: exit code 2 and the message (like every InputError). */
export class CliError extends InputError {}

/**
 * Strict option parsing from the command table: unknown options and stray arguments are usage
 * errors (exit 2) that name the closest real option.
 */
export function parseCommand<N extends CommandName>(name: N, args: string[]): OptionValues<N> & { format?: string } {
  const options = allOptions(name)
  const config: NonNullable<ParseArgsConfig['options']> = Object.fromEntries(Object.entries(options).map(([k, o]) => [k, { type: o.type }]))
  try {
    return parseArgs({ args, options: config, strict: true, allowPositionals: false }).values as OptionValues<N> & { format?: string }
  } catch (err) {
    const e = err as Error & { code?: string }
    const given = /'(-[^'\s]*)/.exec(e.message)?.[1]
    const help = `(tessera ${name} --help lists its options)`
    if (e.code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION' && given) {
      const bare = given.replace(/^-+/, '').split('=')[0]!
      const near = closest(bare, Object.keys(options))
      throw new CliError(`unknown option ${given} for ${name}${near ? `; did you mean --${near}?` : ''} ${help}`)
    }
    if (e.code === 'ERR_PARSE_ARGS_UNEXPECTED_POSITIONAL') throw new CliError(`unexpected argument for ${name}: ${/'([^']*)'/.exec(e.message)?.[1] ?? ''} ${help}`)
    if (e.code === 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE') {
      const option = /--[\w-]+/.exec(e.message)?.[0] ?? 'an option'
      const spec = options[option.slice(2)]
      throw new CliError(spec?.type === 'boolean' ? `${option} takes no value ${help}` : `${option} needs a value ${help}`)
    }
    throw new CliError(`${e.message} ${help}`)
  }
}

/** Splits `a,b c` into ['a', 'b', 'c']. */
export function list(value: string | undefined): string[] {
  return value === undefined ? [] : value.split(/[\s,]+/).filter((s) => s !== '')
}

export function printJson(io: CliIo, value: unknown): void {
  io.out(JSON.stringify(value, null, 2))
}

/** A list: JSON (the default, for scripts) or a table for people (`--format table`). */
export function printList(io: CliIo, rows: readonly object[], format: string | undefined): void {
  if (format === undefined || format === 'json') return printJson(io, rows)
  if (format !== 'table') throw new CliError('--format must be json or table')
  if (rows.length === 0) return io.out('(none)')
  const columns = [...new Set(rows.flatMap((r) => Object.keys(r)))]
  const cell = (v: unknown): string => {
    if (v === null || v === undefined) return '-'
    if (v instanceof Date) return v.toISOString()
    if (Array.isArray(v)) return v.length === 0 ? '-' : v.map(cell).join(',')
    if (typeof v === 'object') return JSON.stringify(v)
    // One line per row: control characters (a newline in a name) are shown escaped.
    return String(v).replace(/[\x00-\x1f\x7f]/g, (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`)
  }
  const cells = rows.map((r) => columns.map((c) => cell((r as Record<string, unknown>)[c])))
  const widths = columns.map((c, i) => Math.max(c.length, ...cells.map((row) => row[i]!.length)))
  const line = (values: string[]) => values.map((v, i) => (i === values.length - 1 ? v : v.padEnd(widths[i]!))).join('  ')
  io.out([line(columns.map((c) => c.toUpperCase())), ...cells.map(line)].join('\n'))
}
