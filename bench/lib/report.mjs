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

/** Names of the subjects the targets compare with (run.mjs names its subjects with these). */
export const NAMES = {
  bareGet: 'ceiling: bare Fastify GET',
  bareSign: 'ceiling: bare Fastify + jose ES256 sign',
  refreshCeiling: 'ceiling: bare Fastify refresh (form, rotation statement, ES256)',
  peerMemory: 'oidc-provider (memory)',
  peerPostgres: 'oidc-provider (postgres)',
}

/** The connection count the latency targets are stated at. */
const TARGET_CONNECTIONS = 50
/** The peak RSS target, bytes (MB = 10^6 bytes, as in the tables). */
const RSS_LIMIT = 150e6

/**
 * The targets of issue 15, each with its measured value and PASS / MISS / n/a (n/a: the scenario
 * or the subject compared with was not measured in this run), plus information rows (status
 * "info", never a target). Never fails the run.
 */
export function evaluateTargets(results) {
  const sc = results.scenarios
  const subj = (scenario, name) => sc[scenario]?.subjects.find((s) => s.name === name && !s.skipped)
  const tess = (scenario) => sc[scenario]?.subjects.find((s) => s.kind === 'tessera' && !s.skipped)
  const t = []
  const add = (name, value, ok, shown) => t.push({ target: name, value, shown, status: ok === null ? 'n/a' : ok ? 'PASS' : 'MISS' })
  const info = (name, value, shown) => t.push({ target: name, value, shown, status: 'info' })
  const atLeast = (r, min) => (r === null ? null : r >= min)
  // Enough digits that a value just under its threshold never shows as the threshold itself.
  const digits = (v, min, d) => {
    while (d < 4 && v < min && Number(v.toFixed(d)) >= min) d++
    return v.toFixed(d)
  }
  const pct = (name, a, b, min) => {
    const r = ratio(rate(a), rate(b))
    add(name, r, atLeast(r, min), r === null || !Number.isFinite(r) ? '—' : `${digits(r * 100, min * 100, 1)} %`)
  }
  const times = (name, a, b, min) => {
    const r = ratio(rate(a), rate(b))
    add(name, r, atLeast(r, min), r === null || !Number.isFinite(r) ? '—' : `${digits(r, min, 2)}×`)
  }

  pct('JWKS (200) ≥ 85 % of a bare Fastify GET', tess('jwks'), subj('jwks', NAMES.bareGet), 0.85)
  pct('JWKS (304) ≥ 90 % of a bare Fastify GET', tess('jwks_304'), subj('jwks_304', NAMES.bareGet), 0.9)

  pct('client_credentials ≥ 80 % of Fastify + one jose ES256 sign', tess('client_credentials'), subj('client_credentials', NAMES.bareSign), 0.8)
  times('client_credentials ≥ 2.5× node-oidc-provider (memory)', tess('client_credentials'), subj('client_credentials', NAMES.peerMemory), 2.5)

  const rf = tess('refresh')
  pct('refresh ≥ 75 % of the fair refresh ceiling (bare Fastify: form, rotation statement, ES256)', rf, subj('refresh', NAMES.refreshCeiling), 0.75)
  times('refresh ≥ 2.5× node-oidc-provider on PostgreSQL', rf, subj('refresh', NAMES.peerPostgres), 2.5)
  {
    const p99 = rf?.latency?.p99 ?? null
    const conns = results.options?.connections ?? null
    const atTarget = conns === TARGET_CONNECTIONS
    add(`refresh p99 < 50 ms at ${TARGET_CONNECTIONS} connections`, p99, p99 === null || !atTarget ? null : p99 < 50, p99 === null ? '—' : `${fmtMs(p99)} ms${atTarget ? '' : ` at ${conns} connections`}`)
  }
  const rot = sc.refresh?.subjects.find((s) => s.best && !s.skipped)
  if (rf && rot) {
    const r = ratio(rate(rf), rate(rot))
    info(`(info) refresh / the rotation statement alone (${rot.name.replace(/^ceiling: /, '')})`, r, fmtPct(r))
  }

  if (sc.login) {
    const ceiling = sc.login.subjects.find((s) => s.kind === 'ceiling' && s.isTarget && !s.skipped)
    pct('/login ≥ 95 % of the raw argon2id verify rate', tess('login'), ceiling, 0.95)
  } else add('/login ≥ 95 % of the raw argon2id verify rate', null, null, '—')

  {
    const probe = sc.jwks_during_login?.probe
    const idle = probe?.clientCredentialsIdle?.p99 ?? null
    const during = probe?.clientCredentialsDuring?.p99 ?? null
    // autocannon records whole milliseconds: an idle p99 under 1 ms counts as 1 ms.
    const r = idle !== null && during !== null ? during / Math.max(idle, 1) : null
    add('client_credentials p99 during a /login burst ≤ 2× its idle p99', r, r === null ? null : r <= 2, r === null ? '—' : `${fmtMs(during)} ms vs ${fmtMs(idle)} ms idle (${fmtRatio(r)})`)
  }

  {
    const main = results.rss?.tessera ?? null
    const others = (results.rss?.scaleOut ?? []).filter((r) => typeof r.peakRss === 'number')
    const worst = others.reduce((a, b) => (b.peakRss > (a?.peakRss ?? -1) ? b : a), null)
    const peak = Math.max(main ?? 0, worst?.peakRss ?? 0) || null
    const where = others.length ? ` (main instance ${fmtMB(main)}; scale_out instances up to ${fmtMB(worst?.peakRss)})` : ''
    add('Tessera peak RSS < 150 MB over the whole bench', peak, peak === null ? null : peak < RSS_LIMIT, `${fmtMB(peak)}${where}`)
  }

  const en = sc.login_enumeration?.enumeration
  if (en) add('login failure kinds (unknown user, wrong / empty password, disabled): response-time medians within 5 %', en.spread, en.spread < 0.05 && en.distinctBodies === 1, fmtPct(en.spread))
  return t
}

/** The scale_out table, as text ('' when the scenario did not run). */
export function scaleOutTable(results) {
  const so = results.scaleOut
  if (!so) return ''
  const rows = so.steps.map((s) =>
    s.skipped
      ? [String(s.instances), '—', '—', '—', '—', '—', '—', '—', '—', `skipped: ${s.skipped}`]
      : [
          String(s.instances),
          fmtNum(s.rps),
          fmtMs(s.p99),
          fmtMs(s.pgCpuMsPerRefresh),
          fmtMs(s.tesseraCpuMsPerRefresh),
          fmtNum(s.refreshesPerPgCore),
          s.pgCores === null ? '—' : s.pgCores.toFixed(2),
          s.tesseraCores === null ? '—' : s.tesseraCores.toFixed(2),
          s.loadGeneratorCores === null ? '—' : s.loadGeneratorCores.toFixed(2),
          [s.unexpected ? `${s.unexpected} non-2xx` : null, s.errors ? `${s.errors} socket errors/timeouts` : null, s.poolExhausted ? 'refresh pool ran out: run cut short' : null].filter(Boolean).join('; '),
        ],
  )
  return [
    `\n## scale_out — ${so.title}`,
    `   ${so.description}`,
    `   ${so.machine}: with more instances than cores they contend with each other and with PostgreSQL`,
    table(['instances', 'req/s med', 'p99 ms', 'PG CPU ms/refresh', 'Tessera CPU ms/refresh', 'refreshes/s per PG core', 'PG cores', 'Tessera cores', 'loadgen cores', ''], rows),
  ].join('\n')
}

export function targetsText(targets) {
  return table(
    ['target', 'measured', ''],
    targets.map((t) => [t.target, t.shown, t.status === 'info' ? '' : t.status]),
  )
}
