// Load generation with autocannon's programmatic API, in the harness process (never in
// the process of the server under test).
import autocannon from 'autocannon'
import { max, median, min } from './util.mjs'

const is2xx = (s) => s >= 200 && s < 300

/**
 * One autocannon run. `nextBody()` (optional) gives a fresh body per request (single-use
 * refresh tokens); when it returns null the pool is exhausted and the run stops early.
 *
 * Returns { rps, total, duration, latency: { p50, p90, p99, max, mean }, unexpected,
 *           statusCodes, errors, timeouts, poolExhausted }.
 * `rps` counts every completed response; `unexpected` is the number of responses whose status
 * `expect` refuses (2xx by default), so a 4xx/5xx storm is visible next to its rate.
 */
export async function runLoad({ url, method = 'GET', headers = {}, body, nextBody, connections, duration, overallRate, expect = is2xx, timeoutS = 10 }) {
  let poolExhausted = false
  let instance
  const request = { method, headers, ...(body !== undefined ? { body } : {}) }
  if (nextBody) {
    request.setupRequest = (req) => {
      let b = nextBody()
      if (b === null) {
        if (!poolExhausted) {
          poolExhausted = true
          setImmediate(() => instance?.stop())
        }
        b = nextBody.exhaustedBody
      }
      req.body = b
      return req
    }
  }
  instance = autocannon({
    url,
    method,
    headers,
    connections,
    duration,
    timeout: timeoutS,
    ...(overallRate ? { overallRate } : {}),
    requests: [request],
  })
  const r = await instance
  const statusCodes = Object.fromEntries(Object.entries(r.statusCodeStats ?? {}).map(([k, v]) => [k, v.count]))
  const expected = Object.entries(statusCodes).reduce((n, [code, count]) => n + (expect(Number(code)) ? count : 0), 0)
  const total = r.requests.total
  return {
    rps: r.duration > 0 ? total / r.duration : 0,
    total,
    sent: r.requests.sent ?? total,
    duration: r.duration,
    latency: { p50: r.latency.p50, p90: r.latency.p90, p99: r.latency.p99, max: r.latency.max, mean: r.latency.mean },
    unexpected: total - expected,
    statusCodes,
    errors: r.errors,
    timeouts: r.timeouts,
    poolExhausted,
  }
}

/**
 * Summary of a subject's recorded runs: median/min/max of the rates, medians of the latency
 * percentiles, sums of failures, the largest peak RSS, and CPU ms per request sent (every request
 * sent was worked off before the CPU counters were read, so this divides by requests sent).
 */
export function summarise(runs) {
  const rates = runs.map((r) => r.rps)
  const lat = runs.filter((r) => r.latency)
  const sent = runs.reduce((n, r) => n + (r.sent ?? 0), 0)
  const cpu = (k) => {
    const v = runs.map((r) => r.cpuMs?.[k])
    return v.length && v.every((x) => typeof x === 'number') && sent > 0 ? v.reduce((a, b) => a + b, 0) / sent : null
  }
  const peaks = runs.map((r) => r.peakRss).filter((x) => typeof x === 'number')
  return {
    rps: { median: median(rates), min: min(rates), max: max(rates) },
    latency: lat.length ? { p50: median(lat.map((r) => r.latency.p50)), p99: median(lat.map((r) => r.latency.p99)), max: max(lat.map((r) => r.latency.max)) } : null,
    unexpected: runs.every((r) => r.unexpected === null || r.unexpected === undefined) ? null : runs.reduce((n, r) => n + (r.unexpected ?? 0), 0),
    errors: runs.reduce((n, r) => n + (r.errors ?? 0) + (r.timeouts ?? 0), 0),
    statusCodes: runs.reduce((acc, r) => {
      for (const [k, v] of Object.entries(r.statusCodes ?? {})) acc[k] = (acc[k] ?? 0) + v
      return acc
    }, {}),
    poolExhausted: runs.some((r) => r.poolExhausted),
    peakRss: peaks.length ? Math.max(...peaks) : null,
    cpuMsPerReq: { server: cpu('server'), pg: cpu('pg') },
    runs,
  }
}

/**
 * A pool of single-use request bodies: `items`, each turned into its body by `toBody` when it is
 * handed out (so a pool of 500k tokens does not also hold 500k body strings). Several runs (even
 * in parallel) may draw from one pool: no item is handed out twice.
 */
export function bodyPool(items, exhaustedBody, toBody = (x) => x) {
  let i = 0
  const bodies = items
  const next = () => (i < bodies.length ? toBody(bodies[i++]) : null)
  next.exhaustedBody = exhaustedBody
  next.remaining = () => bodies.length - i
  next.used = () => i
  return next
}
