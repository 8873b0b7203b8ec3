// The `tessera` CLI run in-process, with its output captured and a fixed standard input.
import { run } from '../../src/cli/main.js'
import type { Env } from '../../src/config.js'

export interface CliResult {
  code: number
  out: string
  err: string
  /** How many times the command read standard input. */
  stdinReads: number
  // Command output is checked field by field.
  json(): any // eslint-disable-line @typescript-eslint/no-explicit-any
}

export async function runTessera(args: string[], env: Env, stdin = ''): Promise<CliResult> {
  const outs: string[] = []
  const errs: string[] = []
  let stdinReads = 0
  const code = await run(args, {
    env,
    out: (line) => outs.push(line),
    err: (line) => errs.push(line),
    readStdin: async () => {
      stdinReads++
      return stdin
    },
  })
  const out = outs.join('\n')
  return { code, out, err: errs.join('\n'), stdinReads, json: () => JSON.parse(out) }
}
