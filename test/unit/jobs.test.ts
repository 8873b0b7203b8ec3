// The background job runner (src/jobs.ts) with a clock the test moves: timers, one run at a
// time, failures logged once per streak and counted, stop.
import t from 'tap'
import { Job, type JobDefinition, type JobName } from '../../src/jobs.js'
import { ManualClock } from '../helpers/clock.js'

function harness(def: Partial<JobDefinition> & Pick<JobDefinition, 'run'>) {
  const clock = new ManualClock(0)
  const logs: { level: 'info' | 'warn'; obj: unknown; msg: string | undefined }[] = []
  const counts: string[] = []
  const job = new Job(
    { name: 'housekeeping', delayMs: () => 1000, failureMessage: 'it failed', recoveryMessage: 'it works again', ...def },
    {
      clock,
      log: { info: (obj, msg) => logs.push({ level: 'info', obj, msg }), warn: (obj, msg) => logs.push({ level: 'warn', obj, msg }) },
      count: (job: JobName, outcome) => counts.push(`${job}:${outcome}`),
    },
  )
  return { clock, logs, counts, job }
}

t.test('runs when the clock passes its delay, then again one delay after each run ends', async (t) => {
  let runs = 0
  const { clock, job, counts } = harness({ run: async () => void runs++ })
  job.start()
  clock.advance(999)
  await job.idle()
  t.equal(runs, 0, 'not a millisecond early')
  clock.advance(1)
  await job.idle()
  t.equal(runs, 1)
  clock.advance(5000)
  await job.idle()
  t.equal(runs, 2, 'a long jump is one run, not five')
  t.same(counts, ['housekeeping:ok', 'housekeeping:ok'])
  await job.stop()
  clock.advance(10_000)
  await job.idle()
  t.equal(runs, 2, 'stopped: no more runs')
})

t.test('one run at a time: a run on demand waits for the one in progress', async (t) => {
  let active = 0
  let most = 0
  const { job } = harness({
    run: async () => {
      most = Math.max(most, ++active)
      await new Promise((r) => setImmediate(r))
      active--
    },
  })
  await Promise.all([job.run(), job.run(), job.run()])
  t.equal(most, 1)
})

t.test('a failure is counted every time, logged once per streak with its code, and the recovery is logged', async (t) => {
  let fail = true
  const { job, logs, counts } = harness({
    run: async () => {
      if (fail) throw Object.assign(new Error('relation does not exist'), { code: '42P01' })
    },
  })
  await job.run()
  await job.run()
  t.same(counts, ['housekeeping:error', 'housekeeping:error'])
  t.same(logs, [{ level: 'warn', obj: { job: 'housekeeping', err: { message: 'relation does not exist', code: '42P01' } }, msg: 'it failed' }])
  fail = false
  await job.run()
  await job.run()
  t.same(logs.slice(1), [{ level: 'info', obj: { job: 'housekeeping' }, msg: 'it works again' }])
  await t.resolves(job.run(), 'run() never rejects')
})

t.test('no delay: never on a timer; stop() lets a run in progress see it and waits for it', async (t) => {
  let sawStop = false
  let release!: () => void
  const { clock, job } = harness({
    delayMs: () => undefined,
    run: async (stopping) => {
      await new Promise<void>((r) => (release = r))
      sawStop = stopping()
    },
  })
  job.start()
  clock.advance(1e9)
  t.equal(await Promise.race([job.idle().then(() => 'idle'), new Promise((r) => setImmediate(() => r('busy')))]), 'idle', 'nothing was started')
  const running = job.run()
  await new Promise((r) => setImmediate(r))
  const stopped = job.stop()
  release()
  await running
  await stopped
  t.ok(sawStop, 'the run saw stopping() turn true')
})
