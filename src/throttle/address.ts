import { isIPv4, isIPv6 } from 'node:net'

/**
 * The throttling key of a client address: an IPv4 address as is, an IPv6 address by its /64
 * (one customer usually holds a whole /64, so per-address counting would be no limit at all),
 * an IPv4-mapped IPv6 address as its IPv4 address. Anything else (no address) is `unknown`.
 */
export function addressKey(ip: string | undefined): string {
  if (ip === undefined) return 'unknown'
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(ip)
  if (mapped && isIPv4(mapped[1]!)) return mapped[1]!
  if (isIPv4(ip)) return ip
  const bare = ip.replace(/%.*$/, '') // a zone index (fe80::1%eth0) names an interface, not a host
  if (!isIPv6(bare)) return 'unknown'
  return `${expandIPv6(bare).slice(0, 4).join(':')}::/64`
}

/** The eight 16-bit groups of an IPv6 address, lower-case hex without leading zeros. */
function expandIPv6(ip: string): string[] {
  let text = ip.toLowerCase()
  // An embedded IPv4 tail (::1.2.3.4) is two groups.
  const v4 = /(\d+)\.(\d+)\.(\d+)\.(\d+)$/.exec(text)
  if (v4) {
    const [a, b, c, d] = v4.slice(1).map(Number) as [number, number, number, number]
    text = text.slice(0, v4.index) + `${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`
  }
  const [head, tail] = text.includes('::') ? text.split('::') as [string, string] : [text, undefined]
  const left = head === '' ? [] : head.split(':')
  const right = tail === undefined || tail === '' ? [] : tail.split(':')
  const zeros = tail === undefined ? [] : Array<string>(8 - left.length - right.length).fill('0')
  return [...left, ...zeros, ...right].map((g) => parseInt(g, 16).toString(16))
}
