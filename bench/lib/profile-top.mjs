#!/usr/bin/env node
// Summarises a V8 .cpuprofile (from `npm run bench -- --profile`): self time by function and by
// package, heaviest first.   node bench/lib/profile-top.mjs FILE [N]
import { readFileSync } from 'node:fs'

const [file, n = '25'] = process.argv.slice(2)
if (!file) {
  console.error('usage: node bench/lib/profile-top.mjs FILE.cpuprofile [N]')
  process.exit(2)
}
const profile = JSON.parse(readFileSync(file, 'utf8'))
const byId = new Map(profile.nodes.map((node) => [node.id, node]))
const self = new Map()
// Samples are node ids, one per sampling interval; timeDeltas gives each sample's duration.
profile.samples.forEach((id, i) => self.set(id, (self.get(id) ?? 0) + (profile.timeDeltas[i] ?? 0)))
const total = [...self.values()].reduce((a, b) => a + b, 0)
const byFunction = new Map()
const byPackage = new Map()
for (const [id, us] of self) {
  const { callFrame: f } = byId.get(id)
  const where = f.url.replace(/^file:\/\//, '').replace(/^.*node_modules\//, 'node_modules/').replace(/^.*\/(dist\/src\/)/, '$1')
  const key = `${f.functionName || '(anonymous)'}  ${where}:${f.lineNumber + 1}`
  byFunction.set(key, (byFunction.get(key) ?? 0) + us)
  const pkg = f.url === '' ? `(${f.functionName || 'native'})` : /node_modules\/((@[^/]+\/)?[^/]+)/.exec(f.url)?.[1] ?? (f.url.startsWith('node:') ? 'node core' : 'tessera')
  byPackage.set(pkg, (byPackage.get(pkg) ?? 0) + us)
}
const show = (title, map, limit) => {
  console.log(`\n${title}`)
  for (const [k, us] of [...map].sort((a, b) => b[1] - a[1]).slice(0, limit)) console.log(`${((100 * us) / total).toFixed(1).padStart(5)} %  ${k}`)
}
console.log(`${file}: ${(total / 1000).toFixed(0)} ms sampled`)
show('by package', byPackage, 15)
show('by function (self time)', byFunction, Number(n))
