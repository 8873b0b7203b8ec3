// Tables, ratios and the targets summary of a benchmark run. Reports, never asserts.
import { fmtMB, fmtMs, fmtNum, fmtPct, fmtRatio, table } from './util.mjs'

const rate = (s) => s?.rps?.median ?? null
const ratio = (a, b) => (a !== null && b !== null && b > 0 ? a / b : null)

/** Adds `ratios` to every scenario of `results` (Tessera ÷ each peer and ceiling). */
export function computeRatios(results) {
  for (const sc of Object.values(results.scenarios)) {
    const tessera = sc.subjects.find((s) => s.kind === 'tessera')
    sc.ratios = {}
    sc.cpuRatios = {}
    if (!tessera) continue
    for (const s of sc.subjects) {
      if (s === tessera || s.skipped) continue
      sc.ratios[s.name] = ratio(rate(tessera), rate(s))
      if (s.cpuMsPerReq?.server != null) sc.cpuRatios[s.name] = ratio(s.cpuMsPerReq.server, tessera.cpuMsPerReq?.server ?? null)
    }
  }
}

function subjectRow(s) {
  if (s.skipped) return [s.name, '—', '—', '—', '—', '—', '—', '—', '—', '—', `skipped: ${s.skipped}`]
  const note = [s.note, s.poolExhausted ? 'refresh pool ran out: run cut short' : null, s.errors ? `${s.errors} socket errors/timeouts` : null].filter(Boolean).join('; ')
  return [
    s.name,
    fmtNum(s.rps.median),
    fmtNum(s.rps.min),
    fmtNum(s.rps.max),
    fmtMs(s.latency?.p50),
    fmtMs(s.latency?.p99),
    s.unexpected === null || s.unexpected === undefined ? '—' : fmtNum(s.unexpected, 0),
    fmtMB(s.peakRss),
    fmtMs(s.cpuMsPerReq?.server),
    fmtMs(s.cpuMsPerReq?.pg),
    note,
  ]
}

/** The per-scenario tables, as text. */
export function scenarioTables(results) {
  const out = []
  const { duration, repeat, connections } = results.options
  for (const [id, sc] of Object.entries(results.scenarios)) {
    out.push(`\n## ${id} — ${sc.title}`)
    out.push(`   ${sc.description ?? `${connections} connections, ${duration} s × ${repeat}, median`}`)
    out.push(
      table(
        ['', 'req/s med', 'min', 'max', 'p50 ms', 'p99 ms', sc.expectLabel ?? 'non-2xx', 'peak RSS', 'CPU ms/req', 'PG ms/req', ''],
        sc.subjects.map(subjectRow),
      ),
    )
    const ratios = Object.entries(sc.ratios ?? {}).filter(([, r]) => r !== null)
    if (ratios.length) out.push('   req/s, Tessera / ' + ratios.map(([name, r]) => `${name}: ${r >= 1 ? fmtRatio(r) : fmtPct(r)}`).join('   '))
    const cpu = Object.entries(sc.cpuRatios ?? {}).filter(([, r]) => r !== null)
    if (cpu.length) out.push('   server CPU per request, other / Tessera (>1: Tessera is cheaper): ' + cpu.map(([name, r]) => `${name}: ${fmtRatio(r)}`).join('   '))
    for (const w of sc.warnings ?? []) out.push(`   ! ${w}`)
  }
  return out.join('\n')
}

/** The targets of the issue, each with its measured value and PASS / MISS / n/a. Never fails the run. */
export function evaluateTargets(results) {
  const sc = results.scenarios
  const subj = (scenario, name) => sc[scenario]?.subjects.find((s) => s.name === name && !s.skipped)
  const tess = (scenario) => sc[scenario]?.subjects.find((s) => s.kind === 'tessera' && !s.skipped)
  const t = []
  const add = (name, value, ok, shown) => t.push({ target: name, value, shown, status: ok === null ? 'n/a' : ok ? 'PASS' : 'MISS' })
  const cmp = (r, min) => (r === null ? null : r >= min)

  const cc = tess('client_credentials')
  if (sc.client_credentials) {
    const r = ratio(rate(cc), rate(subj('client_credentials', 'oidc-provider (memory)')))
    add('client_credentials ≥ 2× node-oidc-provider (memory) req/s', r, cmp(r, 2), fmtRatio(r))
    const p99 = cc?.latency?.p99 ?? null
    add('client_credentials p99 < 50 ms', p99, p99 === null ? null : p99 < 50, `${fmtMs(p99)} ms`)
  }
  const rf = tess('refresh')
  if (sc.refresh) {
    const r1 = ratio(rate(rf), rate(subj('refresh', 'oidc-provider (postgres)')))
    add('refresh ≥ 1.5× node-oidc-provider (PostgreSQL adapter) req/s', r1, cmp(r1, 1.5), fmtRatio(r1))
    const ceiling = sc.refresh.subjects.find((s) => s.kind === 'ceiling' && s.isTarget && !s.skipped)
    const r2 = ratio(rate(rf), rate(ceiling))
    add(`refresh ≥ 60 % of the raw rotation transaction rate${ceiling ? ` (${ceiling.name})` : ''}`, r2, cmp(r2, 0.6), fmtPct(r2))
    const p99 = rf?.latency?.p99 ?? null
    add('refresh p99 < 50 ms', p99, p99 === null ? null : p99 < 50, `${fmtMs(p99)} ms`)
  }
  if (sc.login) {
    const ceiling = sc.login.subjects.find((s) => s.kind === 'ceiling' && s.isTarget && !s.skipped)
    const r = ratio(rate(tess('login')), rate(ceiling))
    add('/login ≥ 90 % of the raw argon2id verify rate', r, cmp(r, 0.9), fmtPct(r))
  }
  if (sc.jwks) {
    const r = ratio(rate(tess('jwks')), rate(subj('jwks', 'ceiling: bare Fastify GET')))
    add('JWKS (200) ≥ 80 % of a bare Fastify route req/s', r, cmp(r, 0.8), fmtPct(r))
  }
  if (sc.jwks_304) {
    const r = ratio(rate(tess('jwks_304')), rate(subj('jwks_304', 'ceiling: bare Fastify GET')))
    add('JWKS (304) ≥ 80 % of a bare Fastify route req/s', r, cmp(r, 0.8), fmtPct(r))
  }
  const en = sc.login_enumeration?.enumeration
  if (en) add('login failure kinds (unknown user, wrong / empty password, disabled): response-time medians within 5 %', en.spread, en.spread < 0.05 && en.distinctBodies === 1, fmtPct(en.spread))
  const flood = sc.login_flood?.probe
  if (flood) {
    const p99 = flood.clientCredentialsDuring?.p99 ?? null
    add('client_credentials p99 < 50 ms during a /login flood', p99, p99 === null ? null : p99 < 50, `${fmtMs(p99)} ms`)
  }
  const peak = results.rss?.tessera ?? null
  add('Tessera peak RSS < 200 MB (whole run)', peak, peak === null ? null : peak < 200e6, fmtMB(peak))
  return t
}

export function targetsText(targets) {
  return table(
    ['target', 'measured', ''],
    targets.map((t) => [t.target, t.shown, t.status]),
  )
}
