// Throwaway PostgreSQL clusters, shared by the test runner (scripts/test.mjs) and
// the benchmark harness (bench/run.mjs).
//
//   const pg = await startCluster({ log, settings: BENCH_SETTINGS })
//   ... pg.url (admin URL, user postgres, database postgres) ...
//   pg.stop()   // synchronous: stops the server and removes its temp dir
//
// The cluster lives in a fresh temp dir (initdb -A trust) and listens on a free
// port on 127.0.0.1 only. When we run as root it runs as the `postgres` OS user
// (initdb/postgres refuse to run as root).
//
// Only node built-ins are used on purpose.

import { spawnSync } from 'node:child_process';
import { accessSync, constants, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';

const IS_ROOT = typeof process.getuid === 'function' && process.getuid() === 0;

/** A problem starting or running the cluster, worth a banner rather than a stack trace. */
export class ClusterError extends Error {}

/**
 * Settings for the test suite: durability off entirely (tests never survive a crash
 * of the throwaway cluster anyway, and this makes them much faster).
 */
export const TEST_SETTINGS = Object.freeze({
  fsync: 'off',
  synchronous_commit: 'off',
  full_page_writes: 'off',
  max_connections: '300',
});

/**
 * Settings for benchmarks: PostgreSQL's defaults (synchronous_commit=on,
 * full_page_writes=on: every commit waits for its WAL write, as in production),
 * except fsync=off, because the benchmark runs on shared, noisy VMs where the
 * cost of an fsync is the disk's weather, not the code's. Both Tessera and every
 * ceiling/peer measured against the cluster see the same settings.
 */
export const BENCH_SETTINGS = Object.freeze({
  fsync: 'off',
  max_connections: '300',
});

// ---------------------------------------------------------------------------
// Locating PostgreSQL server binaries

function isServerBinDir(dir) {
  return ['initdb', 'pg_ctl', 'postgres'].every((b) => {
    try {
      accessSync(join(dir, b), constants.X_OK);
      return true;
    } catch {
      return false;
    }
  });
}

/** Directory holding initdb, pg_ctl and postgres, or null when none is installed. */
export function findPgBinDir() {
  // 1. pg_config --bindir. On Debian, pg_config may come from libpq-dev and
  //    point at a bindir without a server in it, so verify before trusting it.
  const r = spawnSync('pg_config', ['--bindir'], { encoding: 'utf8' });
  if (r.status === 0) {
    const dir = r.stdout.trim();
    if (dir && isServerBinDir(dir)) return dir;
  }
  // 2. newest /usr/lib/postgresql/<version>/bin
  const base = '/usr/lib/postgresql';
  let versions = [];
  try {
    versions = readdirSync(base);
  } catch {
    return null;
  }
  versions.sort((a, b) => parseFloat(b) - parseFloat(a) || b.localeCompare(a));
  for (const v of versions) {
    const dir = join(base, v, 'bin');
    if (isServerBinDir(dir)) return dir;
  }
  return null;
}

/** "PostgreSQL 15.18 (…)" from the server binary. */
export function pgVersion(binDir) {
  const r = spawnSync(join(binDir, 'postgres'), ['--version'], { encoding: 'utf8' });
  return r.status === 0 ? r.stdout.trim().replace(/^postgres\s+\(PostgreSQL\)\s+/, 'PostgreSQL ') : 'PostgreSQL (unknown version)';
}

// ---------------------------------------------------------------------------
// Helpers

export function freePort() {
  return new Promise((res, rej) => {
    const srv = createServer();
    srv.unref();
    srv.on('error', rej);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => res(port));
    });
  });
}

// A directory is usable as parent of the temp dir when running as root if
// every ancestor is traversable by "others" (the postgres user).
function traversableByOthers(dir) {
  let d = resolve(dir);
  for (;;) {
    try {
      if ((statSync(d).mode & 0o001) === 0) return false;
    } catch {
      return false;
    }
    const parent = dirname(d);
    if (parent === d) return true;
    d = parent;
  }
}

function pickTmpParent(log) {
  const t = tmpdir();
  if (!IS_ROOT || traversableByOthers(t)) return t;
  if (traversableByOthers('/tmp')) {
    log(`${t} is not traversable by the postgres user; using /tmp instead`);
    return '/tmp';
  }
  throw new ClusterError(`neither ${t} nor /tmp is traversable by the postgres user`);
}

// Single-quote for the /bin/sh command line that pg_ctl builds from -o.
const shq = (s) => `'${String(s).replace(/'/g, `'\\''`)}'`;

// ---------------------------------------------------------------------------
// Cluster

export class Cluster {
  /**
   * @param {string} binDir from findPgBinDir()
   * @param {{ log?: (msg: string) => void, settings?: Record<string, string> }} [opts]
   *        settings: `-c name=value` server settings (default TEST_SETTINGS)
   */
  constructor(binDir, { log = () => {}, settings = TEST_SETTINGS } = {}) {
    this.binDir = binDir;
    this.log = log;
    this.settings = settings;
    this.dir = null;
    this.dataDir = null;
    this.started = false;
    this.port = null;
  }

  /** Admin URL (trust authentication, user postgres). */
  get url() {
    return `postgres://postgres@127.0.0.1:${this.port}/postgres`;
  }

  // Run a PostgreSQL binary, as the postgres OS user when we are root.
  run(bin, args, { allowFail = false } = {}) {
    const exe = join(this.binDir, bin);
    const [cmd, argv] = IS_ROOT ? ['runuser', ['-u', 'postgres', '--', exe, ...args]] : [exe, args];
    const r = spawnSync(cmd, argv, {
      cwd: this.dir ?? '/',
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, LC_ALL: 'C', LANG: 'C' },
    });
    if (r.error) {
      if (allowFail) return r;
      throw new ClusterError(`could not run ${cmd}: ${r.error.message}`);
    }
    if (r.status !== 0 && !allowFail) {
      throw new ClusterError(`${bin} ${args.join(' ')} failed (exit ${r.status ?? r.signal}):\n${r.stdout}${r.stderr}`);
    }
    return r;
  }

  async start() {
    if (IS_ROOT) {
      const id = spawnSync('id', ['-u', 'postgres'], { encoding: 'utf8' });
      if (id.status !== 0) {
        throw new ClusterError('running as root, but there is no "postgres" OS user to run PostgreSQL as');
      }
    }
    this.dir = mkdtempSync(join(pickTmpParent(this.log), 'tessera-pg-'));
    this.dataDir = join(this.dir, 'data');
    const sockDir = join(this.dir, 'sock');
    mkdirSync(sockDir);
    if (IS_ROOT) {
      const r = spawnSync('chown', ['-R', 'postgres:postgres', this.dir], { encoding: 'utf8' });
      if (r.status !== 0) throw new ClusterError(`chown -R postgres:postgres ${this.dir} failed: ${r.stderr}`);
    }

    this.run('initdb', ['-D', this.dataDir, '-A', 'trust', '-U', 'postgres', '--no-sync', '-E', 'UTF8', '--locale=C']);

    const logFile = join(this.dir, 'postgres.log');
    // Retry a few times in case another process grabs the port between
    // freePort() closing it and postgres binding it.
    for (let attempt = 1; ; attempt++) {
      this.port = await freePort();
      const opts = [
        `-k ${shq(sockDir)}`,
        `-p ${this.port}`,
        '-c listen_addresses=127.0.0.1',
        ...Object.entries(this.settings).map(([k, v]) => `-c ${k}=${v}`),
      ].join(' ');
      // -l: the server must not inherit our stdio, or it would keep the pipe open.
      const r = this.run('pg_ctl', ['-w', '-t', '60', '-D', this.dataDir, '-l', logFile, '-o', opts, 'start'], { allowFail: true });
      if (!r.error && r.status === 0) {
        this.started = true;
        this.startArgs = ['-w', '-t', '60', '-D', this.dataDir, '-l', logFile, '-o', opts, 'start'];
        return;
      }
      // pg_ctl may have started a server that then failed the wait; make sure it is gone.
      this.started = true;
      this.stop();
      if (attempt >= 3) {
        let serverLog = '';
        try {
          serverLog = readFileSync(logFile, 'utf8').split('\n').slice(-30).join('\n');
        } catch {}
        throw new ClusterError(`pg_ctl start failed (exit ${r.status ?? r.signal ?? r.error?.message}):\n${r.stdout ?? ''}${r.stderr ?? ''}\n--- server log ---\n${serverLog}`);
      }
    }
  }

  stop() {
    if (this.started) {
      this.started = false;
      const r = this.run('pg_ctl', ['-D', this.dataDir, '-m', 'immediate', '-w', 'stop'], { allowFail: true });
      // exit 1 with "PID file does not exist" means it is not running: fine.
      if (r.status !== 0 && !/PID file .* does not exist|Is server running\?/.test(`${r.stdout}${r.stderr}`)) {
        this.log(`warning: pg_ctl stop failed: ${r.stdout ?? ''}${r.stderr ?? r.error?.message ?? ''}`);
      }
    }
  }

  /**
   * Stops the server at once, as a crash would, keeping its data for `resume()`. A checkpoint
   * first: with TEST_SETTINGS (synchronous_commit=off) the last commits may still be in WAL
   * buffers, which an immediate stop discards; a durable production server would have them.
   */
  halt() {
    if (!this.started) return;
    this.run('psql', ['-h', join(this.dir, 'sock'), '-p', String(this.port), '-U', 'postgres', '-d', 'postgres', '-Atqc', 'checkpoint'], { allowFail: true });
    this.started = false;
    this.run('pg_ctl', ['-D', this.dataDir, '-m', 'immediate', '-w', 'stop']);
  }

  /** Starts the server again after `halt()`, on the same port with the same data. */
  resume() {
    if (this.started || !this.startArgs) return;
    this.run('pg_ctl', this.startArgs);
    this.started = true;
  }

  remove() {
    if (this.dir) {
      try {
        rmSync(this.dir, { recursive: true, force: true, maxRetries: 3 });
      } catch (e) {
        this.log(`warning: could not remove ${this.dir}: ${e.message}`);
      }
      this.dir = null;
    }
  }
}

/**
 * Starts a throwaway cluster. Resolves to `{ url, port, dir, binDir, version, settings, cluster, stop() }`;
 * `stop()` is synchronous (usable from a process 'exit' handler), idempotent, and removes the temp dir.
 * `onCreate(cluster)` is called before anything is created on disk, so a caller's signal handler
 * can clean up a cluster that is still starting.
 */
export async function startCluster({ log = () => {}, settings = TEST_SETTINGS, binDir = findPgBinDir(), onCreate } = {}) {
  if (!binDir) {
    throw new ClusterError('no PostgreSQL server binaries found (pg_config --bindir, /usr/lib/postgresql/*/bin); install them (apt-get install -y postgresql)');
  }
  const cluster = new Cluster(binDir, { log, settings });
  onCreate?.(cluster);
  const stop = () => {
    cluster.stop();
    cluster.remove();
  };
  try {
    await cluster.start();
  } catch (e) {
    stop();
    throw e;
  }
  return { url: cluster.url, port: cluster.port, dir: cluster.dir, binDir, version: pgVersion(binDir), settings: { ...settings }, cluster, stop };
}
