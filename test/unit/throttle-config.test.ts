// Brute-force settings (docs/security.md "Brute force and abuse", #12) and the password policy for new
// passwords (NIST SP 800-63B; SECURITY.md #98, #100): pure modules, no database.
import t from 'tap'
import { ConfigError, loadConfig } from '../../src/config.js'
import { MAX_PASSWORD_BYTES, passwordPolicyProblem, PasswordHasher } from '../../src/users/passwords.js'
import type { OAuthError } from '../../src/errors.js'
import { ClientRateLimit } from '../../src/throttle/client-rate-limit.js'
import { ManualClock } from '../helpers/clock.js'

const problems = (env: Record<string, string>): string[] => {
  try {
    loadConfig(env)
    return []
  } catch (err) {
    if (err instanceof ConfigError) return err.problems
    throw err
  }
}

t.test('(#12) throttle defaults: 10 / 5 / 100 free failures, 1 s doubling to 900 s, 12 h memory, hashing on every core (at a lower priority) with 64 waiting, 1,000 /token requests per second per client', async (t) => {
  const c = loadConfig({})
  t.same(c.loginThrottle, { accountFreeFailures: 10, addressAccountFreeFailures: 5, addressFreeFailures: 100, backoffBaseSeconds: 1, backoffMaxSeconds: 900, memorySeconds: 43_200 })
  t.same(c.passwordHashing, { concurrency: 0, queue: 64 })
  t.equal(c.clientRateLimitPerSecond, 1000)
})

t.test('(#12) throttle settings are validated at start, each problem named', async (t) => {
  t.match(problems({ LOGIN_ACCOUNT_FREE_FAILURES: '0' }).join('\n'), /LOGIN_ACCOUNT_FREE_FAILURES must be an integer between 1 and 1000000/)
  t.match(problems({ LOGIN_BACKOFF_MAX_SECONDS: '100000' }).join('\n'), /LOGIN_BACKOFF_MAX_SECONDS must be an integer between 1 and 86400/)
  t.match(problems({ LOGIN_FAILURE_MEMORY_SECONDS: '600' }).join('\n'), /LOGIN_FAILURE_MEMORY_SECONDS must be at least LOGIN_BACKOFF_MAX_SECONDS \(900\)/)
  t.match(problems({ LOGIN_BACKOFF_BASE_SECONDS: '60', LOGIN_BACKOFF_MAX_SECONDS: '30' }).join('\n'), /LOGIN_BACKOFF_BASE_SECONDS must not exceed LOGIN_BACKOFF_MAX_SECONDS \(30\)/)
  t.match(problems({ PASSWORD_HASH_QUEUE: '-1', CLIENT_RATE_LIMIT_PER_SECOND: 'lots' }).join('\n'), /PASSWORD_HASH_QUEUE[^\n]*\n[^\n]*CLIENT_RATE_LIMIT_PER_SECOND/)
})

t.test('#100 (#12) new passwords: 8 characters at least, passphrases up to 1,024 bytes, none from the common and breached list, not the username; each refusal names its rule', async (t) => {
  t.equal(await passwordPolicyProblem('short'), 'password must have at least 8 characters')
  t.equal(await passwordPolicyProblem('x'.repeat(MAX_PASSWORD_BYTES + 1)), 'password must be at most 1024 bytes (a long passphrase fits)')
  for (const common of ['password', 'Password1', 'iloveyou', '123456789', 'qwertyuiop', 'sunshine']) {
    t.equal(await passwordPolicyProblem(common), 'password is on the list of common and breached passwords: choose another', common)
  }
  t.equal(await passwordPolicyProblem('alice12345', 'Alice12345'), 'password must not equal the username')
  t.equal(await passwordPolicyProblem('correct horse battery staple'), undefined, 'a passphrase')
  t.equal(await passwordPolicyProblem('é'.repeat(512)), undefined, '1,024 bytes exactly')
  t.equal(await passwordPolicyProblem('tr0ub4dor&3 but longer'), undefined)
})

t.test('#36 (#12) the hashing queue: reservations count, a saturated queue refuses at once, released places come back', async (t) => {
  const hasher = new PasswordHasher({ memoryKib: 8192, timeCost: 1, parallelism: 1 }, { concurrency: 1, queue: 1 })
  const a = hasher.reserve()
  const b = hasher.reserve()
  t.equal(hasher.saturated(), true)
  t.throws(() => hasher.reserve(), { code: 'temporarily_unavailable', retryAfterSeconds: 1 })
  a.release()
  a.release() // twice is once
  const c = hasher.reserve()
  const stored = await hasher.hash('a password')
  t.equal(await b.verify(stored, 'a password'), true)
  t.equal(await c.verifyDecoy('a password'), false)
  t.equal(hasher.verifications, 2)
  t.equal(hasher.saturated(), false)
})

t.test('#40 (#12) the client rate: a token bucket of twice the rate, refilled continuously, never below zero after a clock step back', async (t) => {
  const clock = new ManualClock(1_000_000)
  const limit = new ClientRateLimit(2, clock)
  for (let i = 0; i < 4; i++) limit.take('c1', null)
  const refused = (() => {
    try {
      limit.take('c1', null)
    } catch (err) {
      return err as OAuthError
    }
  })()
  t.equal(refused?.status, 429)
  t.equal(refused?.retryAfterSeconds, 1)
  clock.advance(500)
  limit.take('c1', null)
  t.throws(() => limit.take('c1', null))
  clock.advance(-10_000)
  t.throws(() => limit.take('c1', null), 'a clock step back adds nothing')
  limit.take('c2', 0)
  for (let i = 0; i < 1000; i++) limit.take('c3', 0)
  t.pass('0: no limit')
  t.equal(new ClientRateLimit(0, clock).take('c4', null), undefined, 'default 0: no limit')
})
