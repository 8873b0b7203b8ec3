import { createRequire } from 'node:module'
import { availableParallelism } from 'node:os'
import { Worker } from 'node:worker_threads'

/**
 * How much lower than the event loop the hashing threads run (Linux `nice`, per thread): under
 * contention the scheduler gives the thread that signs tokens and serves the JWKS about ten times
 * the CPU of a hashing thread, so a burst of logins cannot starve them; with nothing else to do,
 * hashing still gets every idle core.
 */
export const HASHING_NICENESS = 10

export interface Argon2Options {
  readonly algorithm: 2
  readonly memoryCost: number
  readonly timeCost: number
  readonly parallelism: number
}

type Job = { op: 'hash'; password: string; options: Argon2Options } | { op: 'verify'; stored: string; password: string }
type Reply = { id: number; ok: true; value: string | boolean } | { id: number; ok: false; message: string }

// The worker's whole program, an ES module from a data: URL (whatever the process's module
// flags): lower its own thread's priority (Linux applies setpriority to the calling thread only),
// then run each job with @node-rs/argon2's synchronous functions, one at a time. The package is
// the one Tessera resolves, whatever the working directory.
const workerSource = (argon2Path: string, niceness: number) => `
import { parentPort } from 'node:worker_threads'
import { setPriority } from 'node:os'
import { createRequire } from 'node:module'
const argon2 = createRequire(${JSON.stringify(argon2Path)})(${JSON.stringify(argon2Path)})
try { setPriority(${niceness}) } catch {}
parentPort.on('message', (job) => {
  try {
    const value = job.op === 'hash' ? argon2.hashSync(job.password, job.options) : argon2.verifySync(job.stored, job.password)
    parentPort.postMessage({ id: job.id, ok: true, value })
  } catch (err) {
    parentPort.postMessage({ id: job.id, ok: false, message: String(err && err.message) })
  }
})
`

/** The thread running a job died: the job's outcome is unknown (not a wrong password). */
export class HashThreadLost extends Error {}

interface Slot {
  worker: Worker
  busy: { id: number; resolve: (v: string | boolean) => void; reject: (e: Error) => void } | undefined
}

/**
 * argon2id on worker threads of lower priority, one job per thread at a time, at most one thread
 * per core; jobs beyond that wait here (the PasswordHasher in front bounds how many). Threads
 * start on first use and keep the process alive only while they hash; one that dies is replaced.
 */
class HashPool {
  private readonly slots: Slot[] = []
  private readonly queue: { job: Job; resolve: (v: string | boolean) => void; reject: (e: Error) => void }[] = []
  private nextId = 1
  private readonly url = new URL(`data:text/javascript,${encodeURIComponent(workerSource(createRequire(import.meta.url).resolve('@node-rs/argon2'), HASHING_NICENESS))}`)

  constructor(private readonly size: number) {}

  run(job: Job): Promise<string | boolean> {
    return new Promise((resolve, reject) => {
      this.queue.push({ job, resolve, reject })
      this.pump()
    })
  }

  private pump(): void {
    while (this.queue.length > 0) {
      const slot = this.slots.find((s) => s.busy === undefined) ?? (this.slots.length < this.size ? this.spawn() : undefined)
      if (!slot) return
      const { job, resolve, reject } = this.queue.shift()!
      const id = this.nextId++
      slot.busy = { id, resolve, reject }
      // A job in flight keeps the process alive, as libuv's own async work would; an idle thread does not.
      slot.worker.ref()
      slot.worker.postMessage({ ...job, id })
    }
  }

  private spawn(): Slot {
    const worker = new Worker(this.url, { name: 'tessera-argon2' })
    const slot: Slot = { worker, busy: undefined }
    worker.on('message', (reply: Reply) => {
      const busy = slot.busy
      if (!busy || busy.id !== reply.id) return
      slot.busy = undefined
      worker.unref()
      if (reply.ok) busy.resolve(reply.value)
      else busy.reject(new Error(reply.message))
      this.pump()
    })
    const lost = (err: Error) => {
      const i = this.slots.indexOf(slot)
      if (i >= 0) this.slots.splice(i, 1)
      slot.busy?.reject(err)
      slot.busy = undefined
      this.pump()
    }
    worker.on('error', (err) => lost(new HashThreadLost(`argon2 worker failed: ${err.message}`)))
    worker.on('exit', (code) => lost(new HashThreadLost(`argon2 worker exited (code ${code})`)))
    // After the listeners (attaching a 'message' listener refs the worker's port again).
    worker.unref()
    this.slots.push(slot)
    return slot
  }
}

let pool: HashPool | undefined
/** The process's hashing threads (every PasswordHasher of the process shares them). */
function hashPool(): HashPool {
  pool ??= new HashPool(Math.max(1, availableParallelism()))
  return pool
}

/** argon2id hash (PHC string) on a hashing thread. */
export async function hashOnPool(password: string, options: Argon2Options): Promise<string> {
  return (await hashPool().run({ op: 'hash', password, options })) as string
}

/** argon2id verification on a hashing thread; throws when `stored` is not a valid hash. */
export async function verifyOnPool(stored: string, password: string): Promise<boolean> {
  return (await hashPool().run({ op: 'verify', stored, password })) as boolean
}
