// The throttling key of a client address (src/throttle/address.ts, #12): IPv6 by its /64.
import t from 'tap'
import { addressKey } from '../../src/throttle/address.js'

t.test('(#12) IPv4 as is, IPv6 by /64 in one canonical form, IPv4-mapped as IPv4, anything else unknown', async (t) => {
  const cases: [string | undefined, string][] = [
    ['203.0.113.7', '203.0.113.7'],
    ['::ffff:203.0.113.7', '203.0.113.7'],
    ['2001:db8:1:2::1', '2001:db8:1:2::/64'],
    ['2001:0DB8:0001:0002:ffff:ffff:ffff:ffff', '2001:db8:1:2::/64'],
    ['2001:db8::', '2001:db8:0:0::/64'],
    ['::1', '0:0:0:0::/64'],
    ['fe80::1%eth0', 'fe80:0:0:0::/64'],
    ['::203.0.113.7', '0:0:0:0::/64'],
    ['2001:db8:1:2:3:4:5:6', '2001:db8:1:2::/64'],
    ['1:2:3::4:5:6:7', '1:2:3:0::/64'],
    [undefined, 'unknown'],
    ['not an address', 'unknown'],
    ['', 'unknown'],
  ]
  for (const [ip, key] of cases) t.equal(addressKey(ip), key, String(ip))
})
