// Small helpers shared by the benchmark harness. Node built-ins only.
import { setTimeout as sleep } from 'node:timers/promises'

export { sleep }

export const log = (msg) => process.stderr.write(`[bench] ${msg}\n`)

/** Median of numbers (mean of the two middle ones for an even count); null when empty. */
export function median(values) {
  const v = values.filter((x) => typeof x === 'number' && Number.isFinite(x)).sort((a, b) => a - b)
  if (v.length === 0) return null
  const mid = v.length >> 1
  return v.length % 2 ? v[mid] : (v[mid - 1] + v[mid]) / 2
}

export const min = (values) => (values.length ? Math.min(...values) : null)
export const max = (values) => (values.length ? Math.max(...values) : null)

/** Percentile (nearest rank) of an unsorted list. */
export function percentile(values, p) {
  if (values.length === 0) return null
  const v = [...values].sort((a, b) => a - b)
  const rank = Math.min(v.length - 1, Math.max(0, Math.ceil((p / 100) * v.length) - 1))
  return v[rank]
}

/** 12345.6 -> "12,346"; small numbers keep one decimal. */
export function fmtNum(n, digits) {
  if (n === null || n === undefined || !Number.isFinite(n)) return '—'
  const d = digits ?? (Math.abs(n) >= 100 ? 0 : 1)
  return n.toLocaleString('en-US', { minimumFractionDigits: d, maximumFractionDigits: d })
}

export const fmtMs = (n) => (n === null || n === undefined || !Number.isFinite(n) ? '—' : fmtNum(n, n >= 100 ? 0 : n >= 10 ? 1 : 2))
export const fmtMB = (bytes) => (bytes === null || bytes === undefined ? '—' : `${fmtNum(bytes / 1e6, 0)} MB`)
export const fmtRatio = (r) => (r === null || r === undefined || !Number.isFinite(r) ? '—' : `${r.toFixed(2)}×`)
export const fmtPct = (r) => (r === null || r === undefined || !Number.isFinite(r) ? '—' : `${Math.round(r * 100)} %`)

/** Renders rows (arrays of strings) as an aligned text table; first column left-aligned. */
export function table(header, rows) {
  const all = [header, ...rows]
  const widths = header.map((_, i) => Math.max(...all.map((r) => String(r[i] ?? '').length)))
  const line = (r) => r.map((c, i) => (i === 0 ? String(c ?? '').padEnd(widths[i]) : String(c ?? '').padStart(widths[i]))).join('  ')
  return [line(header), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.map(line)].join('\n')
}
