// Raw argon2id rate with @node-rs/argon2, in its own process (the same cores as the server
// under test, libuv's default thread pool of 4 like Tessera's): the ceiling of /login.
//
//   node bench/lib/argon2-rate.mjs --memory 19456 --time 2 --parallelism 1 --duration 10 --repeat 3 [--concurrency 8]
//
// Keeps `concurrency` operations in flight (more than the thread pool, so it never idles),
// first hash() (a fresh salt each, like creating a user), then verify() (what /login does).
// Prints one JSON line: { params, concurrency, threadpool, hash: [per-run/s], verify: [per-run/s] }.
import { hash, verify } from '@node-rs/argon2'
import { parseArgs } from 'node:util'

const { values } = parseArgs({
  options: {
    memory: { type: 'string', default: '19456' },
    time: { type: 'string', default: '2' },
    parallelism: { type: 'string', default: '1' },
    duration: { type: 'string', default: '10' },
    repeat: { type: 'string', default: '3' },
    concurrency: { type: 'string', default: '8' },
    warmup: { type: 'string', default: '1' },
  },
})
const options = { algorithm: 2, memoryCost: Number(values.memory), timeCost: Number(values.time), parallelism: Number(values.parallelism) }
const concurrency = Number(values.concurrency)
const password = 'correct horse battery staple'
const stored = await hash(password, options)

async function rate(op, seconds) {
  const end = performance.now() + seconds * 1000
  let done = 0
  const worker = async () => {
    while (performance.now() < end) {
      await op()
      done++
    }
  }
  const start = performance.now()
  await Promise.all(Array.from({ length: concurrency }, worker))
  return done / ((performance.now() - start) / 1000)
}

const doHash = () => hash(password, options)
const doVerify = async () => {
  if (!(await verify(stored, password))) throw new Error('verify failed')
}

const duration = Number(values.duration)
const repeat = Number(values.repeat)
if (Number(values.warmup) > 0) await rate(doVerify, Number(values.warmup))
const result = { params: { memoryKib: options.memoryCost, timeCost: options.timeCost, parallelism: options.parallelism }, concurrency, threadpool: Number(process.env.UV_THREADPOOL_SIZE ?? 4), hash: [], verify: [] }
for (let i = 0; i < repeat; i++) {
  result.verify.push(await rate(doVerify, duration))
  result.hash.push(await rate(doHash, Math.min(duration, Math.max(1, duration / 3))))
}
process.stdout.write(JSON.stringify(result) + '\n')
