// Child processes of the benchmark: servers under test (Tessera, peers, ceilings),
// their readiness, their memory (peak RSS), and a clean stop.
import { spawn, spawnSync } from 'node:child_process'
import { closeSync, createWriteStream, openSync, readdirSync, readFileSync, writeFileSync } from 'node:fs'
import { createInterface } from 'node:readline'
import { log, sleep } from './util.mjs'

/** Every child still running; killed on exit. */
const live = new Set()

/** Synchronous last-resort kill of every child we started (for 'exit' handlers). */
export function killAllChildren(signal = 'SIGKILL') {
  for (const c of live) {
    try {
      c.kill(signal)
    } catch {}
  }
}

/**
 * Starts a server process. stdout/stderr go to `logFile` (a server's log lines must not
 * cost the load generator any CPU), unless `readyLine` is given, in which case stdout is
 * read until a line matches it (and then drained).
 */
export function startProcess({ name, command = process.execPath, args, env, cwd, logFile, readyLine }) {
  const fd = openSync(logFile, 'a')
  const child = spawn(command, args, {
    cwd,
    env,
    stdio: ['ignore', readyLine ? 'pipe' : fd, fd],
  })
  closeSync(fd)
  live.add(child)
  const exited = new Promise((res) => child.once('exit', (code, signal) => {
    live.delete(child)
    res({ code, signal })
  }))
  let lineWaiter
  if (readyLine) {
    const rl = createInterface({ input: child.stdout })
    const lines = []
    let notify = () => {}
    rl.on('line', (l) => {
      lines.push(l)
      notify()
    })
    lineWaiter = async (timeoutMs) => {
      const deadline = Date.now() + timeoutMs
      for (;;) {
        const hit = lines.map((l) => readyLine.exec(l)).find(Boolean)
        if (hit) {
          // From now on the child's stdout goes to its log file, not through us.
          rl.removeAllListeners('line')
          rl.close()
          child.stdout.pipe(createWriteStream(logFile, { flags: 'a' }))
          return hit
        }
        if (child.exitCode !== null || child.signalCode !== null) throw new Error(`${name} exited before it was ready (see ${logFile})`)
        if (Date.now() > deadline) throw new Error(`${name} did not print its ready line within ${timeoutMs / 1000} s (see ${logFile})`)
        await Promise.race([new Promise((r) => (notify = r)), sleep(200), exited])
      }
    }
  }
  return {
    name,
    child,
    pid: child.pid,
    logFile,
    exited,
    /** Resolves with the match of `readyLine`. */
    waitForLine: (timeoutMs = 60_000) => lineWaiter(timeoutMs),
    /** Polls `url` until it answers 200. */
    async waitForHttp(url, timeoutMs = 60_000) {
      const deadline = Date.now() + timeoutMs
      for (;;) {
        if (child.exitCode !== null || child.signalCode !== null) throw new Error(`${name} exited (code ${child.exitCode ?? child.signalCode}) before it was ready; see ${logFile}`)
        try {
          const r = await fetch(url, { signal: AbortSignal.timeout(2000) })
          await r.arrayBuffer()
          if (r.status === 200) return
        } catch {}
        if (Date.now() > deadline) throw new Error(`${name} was not ready at ${url} within ${timeoutMs / 1000} s; see ${logFile}`)
        await sleep(100)
      }
    },
    /** SIGTERM, then SIGKILL after `graceMs`. */
    async stop(graceMs = 10_000) {
      if (child.exitCode !== null || child.signalCode !== null) return exited
      child.kill('SIGTERM')
      const t = setTimeout(() => child.kill('SIGKILL'), graceMs)
      const r = await exited
      clearTimeout(t)
      return r
    },
  }
}

/** Runs a command to completion; resolves `{ code, stdout, stderr }`. */
export function runCommand(command, args, { env, cwd, input } = {}) {
  return new Promise((res, rej) => {
    const child = spawn(command, args, { env, cwd, stdio: ['pipe', 'pipe', 'pipe'] })
    live.add(child)
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (d) => (stdout += d))
    child.stderr.on('data', (d) => (stderr += d))
    child.on('error', rej)
    child.on('close', (code) => {
      live.delete(child)
      res({ code, stdout, stderr })
    })
    child.stdin.end(input ?? '')
  })
}

function procStatusKb(pid, field) {
  try {
    const m = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(readFileSync(`/proc/${pid}/status`, 'utf8'))
    return m ? Number(m[1]) * 1024 : null
  } catch {
    return null
  }
}

/**
 * Peak resident memory of a process over a window: resets the kernel's high-water mark
 * (VmHWM, via /proc/PID/clear_refs; needs the same user or root) at `start()`, polls VmRSS
 * every 100 ms, and at `stop()` returns the larger of the polled maximum and VmHWM
 * (VmHWM only when the reset worked, otherwise it is the lifetime peak).
 */
export class RssMonitor {
  constructor(pid) {
    this.pid = pid
    this.lifetimePeak = procStatusKb(pid, 'VmHWM') ?? 0
  }

  start() {
    // Whatever happened since the last reset (start-up, warm-ups) still counts for the lifetime peak.
    const before = procStatusKb(this.pid, 'VmHWM')
    if (before !== null && before > this.lifetimePeak) this.lifetimePeak = before
    this.hwmReset = false
    try {
      writeFileSync(`/proc/${this.pid}/clear_refs`, '5')
      this.hwmReset = true
    } catch {}
    this.polled = procStatusKb(this.pid, 'VmRSS') ?? 0
    this.timer = setInterval(() => {
      const v = procStatusKb(this.pid, 'VmRSS')
      if (v !== null && v > this.polled) this.polled = v
    }, 100)
    this.timer.unref()
  }

  /** Peak RSS in bytes since start(). */
  stop() {
    clearInterval(this.timer)
    const hwm = procStatusKb(this.pid, 'VmHWM')
    const last = procStatusKb(this.pid, 'VmRSS')
    const peak = Math.max(this.polled, last ?? 0, this.hwmReset && hwm !== null ? hwm : 0)
    if (peak > this.lifetimePeak) this.lifetimePeak = peak
    return peak
  }

  /** Lifetime peak, including what happened since the last window. */
  peak() {
    const hwm = procStatusKb(this.pid, 'VmHWM')
    if (hwm !== null && hwm > this.lifetimePeak) this.lifetimePeak = hwm
    return this.lifetimePeak
  }

  /** Current RSS in bytes. */
  current() {
    return procStatusKb(this.pid, 'VmRSS')
  }
}

const CLK_TCK = Number(spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).stdout) || 100

// /proc/PID/stat fields after the command name (which may hold spaces and parentheses):
// [0] state, [1] ppid, …, [11] utime, [12] stime, [13] cutime, [14] cstime (clock ticks).
function statFields(pid) {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')
  } catch {
    return null
  }
}

function cpuTicks(pid) {
  const f = statFields(pid)
  return f ? Number(f[11]) + Number(f[12]) : null
}

/** CPU time (user + system, all threads) of one process, in ms. */
export function processCpuMs(pid) {
  const t = cpuTicks(pid)
  return t === null ? null : (t * 1000) / CLK_TCK
}

/**
 * CPU time of a whole PostgreSQL cluster, in ms: the postmaster, its live children (backends,
 * walwriter…) and, through the postmaster's cutime/cstime, the children that already exited.
 */
export function clusterCpuMs(postmasterPid) {
  const pm = statFields(postmasterPid)
  if (!pm) return null
  let ticks = Number(pm[11]) + Number(pm[12]) + Number(pm[13]) + Number(pm[14])
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue
    const f = statFields(name)
    if (f && Number(f[1]) === postmasterPid) ticks += Number(f[11]) + Number(f[12])
  }
  return (ticks * 1000) / CLK_TCK
}

/** CPU time of the whole machine since boot, in ms: { busy (everything but idle and iowait), steal }. */
export function machineCpuMs() {
  try {
    const f = readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1).map(Number)
    // user nice system idle iowait irq softirq steal (guest time is already in user)
    const [user, nice, system, , , irq, softirq, steal = 0] = f
    const k = 1000 / CLK_TCK
    return { busy: (user + nice + system + irq + softirq + steal) * k, steal: steal * k }
  } catch {
    return null
  }
}

/** CPU time of this process and of every child it has reaped, in ms. */
export function selfAndChildrenCpuMs() {
  const f = statFields('self')
  return f ? ((Number(f[11]) + Number(f[12]) + Number(f[13]) + Number(f[14])) * 1000) / CLK_TCK : null
}

/** Measures CPU ms consumed between start() and stop() with `read()` (a cumulative counter). */
export class CpuMeter {
  constructor(read) {
    this.read = read
  }
  start() {
    this.t0 = this.read()
  }
  stop() {
    const t1 = this.read()
    return this.t0 === null || t1 === null ? null : t1 - this.t0
  }
}

/**
 * Waits until a process is idle: `readCpuMs()` (cumulative CPU ms, e.g. () => processCpuMs(pid))
 * grows by at most `quietMs` in each of two consecutive 100 ms windows, or `maxMs` passed.
 * autocannon abandons its in-flight requests when a run ends, but the server still works them
 * off (a /login queue is seconds of argon2id): the next run must not start while the server is
 * busy with the previous one's leftovers.
 */
export async function waitIdle(readCpuMs, { maxMs = 15_000, quietMs = 10 } = {}) {
  const deadline = Date.now() + maxMs
  let quiet = 0
  let last = readCpuMs()
  while (last !== null && quiet < 2 && Date.now() < deadline) {
    await sleep(100)
    const now = readCpuMs()
    if (now === null) return
    quiet = now - last <= quietMs ? quiet + 1 : 0
    last = now
  }
}

/** Logs the last lines of a server log (after a failure). */
export function tailLog(file, lines = 20) {
  try {
    const text = readFileSync(file, 'utf8').trimEnd().split('\n').slice(-lines).join('\n')
    log(`--- last lines of ${file} ---\n${text}`)
  } catch {}
}
