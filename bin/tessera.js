#!/usr/bin/env node
// The `tessera` command. Runs the compiled CLI (npm ci / npm run build produce dist/).
import { existsSync } from 'node:fs'
import { fileURLToPath } from 'node:url'

const main = new URL('../dist/src/cli/main.js', import.meta.url)
if (!existsSync(fileURLToPath(main))) {
  console.error('tessera: dist/ is missing; run `npm run build` first')
  process.exit(1)
}
const { run } = await import(main.href)
process.exitCode = await run(process.argv.slice(2))
