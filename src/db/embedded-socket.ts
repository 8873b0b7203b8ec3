import { randomInt } from 'node:crypto'
import { chmodSync, lstatSync, mkdirSync, rmSync } from 'node:fs'
import { createServer, type Server, type Socket } from 'node:net'
import { join } from 'node:path'
import type { Clock } from '../clock.js'
import type { PGliteSession } from './pglite-dialect.js'

/** The port in the socket's name: `pg` (and psql) connect to `DIR/.s.PGSQL.<port>`. */
export const EMBEDDED_SOCKET_PORT = 5432
/** The socket's file name inside its directory. */
export const EMBEDDED_SOCKET_FILE = `.s.PGSQL.${EMBEDDED_SOCKET_PORT}`
/** A client holding the session (inside a transaction) silent this long is cut off and rolled back. */
export const IDLE_IN_TRANSACTION_MS = 10_000
/** Clients connected at once; more are refused (the CLI opens one). */
export const MAX_SOCKET_CLIENTS = 16
/** The largest protocol message accepted (a bigger one ends the connection). */
const MAX_MESSAGE_BYTES = 64 * 1024 * 1024
/** Linux and macOS limit a socket path to 107/103 bytes. */
const MAX_SOCKET_PATH = 100

const PROTOCOL_3 = 196_608
const SSL_REQUEST = 80_877_103
const GSSENC_REQUEST = 80_877_104
const CANCEL_REQUEST = 80_877_102
/** Messages after which the client waits for an answer: the end of a batch. */
const BATCH_ENDS = new Set(['S', 'Q', 'H', 'F'])

export interface EmbeddedSocketOptions {
  readonly session: PGliteSession
  /** The directory of the socket (created 0700); the socket is `dir/.s.PGSQL.5432` (0600). */
  readonly dir: string
  readonly clock: Clock
  readonly log: { info(obj: object, msg: string): void; warn(obj: object, msg: string): void }
  readonly idleInTransactionMs?: number
}

/** The socket path for a socket directory. */
export const embeddedSocketPath = (dir: string): string => join(dir, EMBEDDED_SOCKET_FILE)

/**
 * Serves the embedded database of a running server on a Unix socket, so that the `tessera` CLI
 * (through `pg`) can work beside it (docs/embedded.md). PGlite is one PostgreSQL session: each
 * client takes it through the same queue as the server's own queries (`PGliteSession`), for one
 * batch of messages, and keeps it while its transaction is open; the session goes back when a
 * ReadyForQuery says idle. A client that disconnects or falls silent inside a transaction is
 * rolled back. Only the owner can connect: the directory is 0700 and the socket 0600.
 */
export class EmbeddedSocketServer {
  private readonly connections = new Set<Connection>()
  private closing: Promise<void> | undefined

  private constructor(
    private readonly server: Server,
    readonly path: string,
    private readonly params: ReadonlyArray<readonly [string, string]>,
    private readonly o: EmbeddedSocketOptions,
  ) {}

  /** Creates the directory, removes a stale socket left by a crashed server, and listens. */
  static async start(o: EmbeddedSocketOptions): Promise<EmbeddedSocketServer> {
    const path = embeddedSocketPath(o.dir)
    if (path.length > MAX_SOCKET_PATH) throw new Error(`the socket path ${path} is longer than ${MAX_SOCKET_PATH} bytes (a Unix socket limit): set EMBEDDED_DATABASE_SOCKET to a shorter directory`)
    prepareDirectory(o.dir)
    removeStaleSocket(path)
    const params = await serverParameters(o.session)
    const server = createServer()
    const self = new EmbeddedSocketServer(server, path, params, o)
    server.on('connection', (socket) => self.accept(socket))
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject)
      server.listen({ path, exclusive: true }, () => {
        server.removeListener('error', reject)
        resolve()
      })
    })
    server.on('error', (err) => o.log.warn({ err: { message: err.message } }, 'embedded database socket error'))
    chmodSync(path, 0o600)
    return self
  }

  /** Clients connected now. */
  get clients(): number {
    return this.connections.size
  }

  /** Stops listening, ends every client (rolling back an open transaction), removes the socket. */
  close(): Promise<void> {
    this.closing ??= (async () => {
      const stopped = new Promise<void>((resolve) => this.server.close(() => resolve()))
      await Promise.all([...this.connections].map((c) => c.end('the server is shutting down')))
      await stopped
      rmSync(this.path, { force: true })
    })()
    return this.closing
  }

  private accept(socket: Socket): void {
    if (this.closing || this.connections.size >= MAX_SOCKET_CLIENTS) {
      socket.end(errorResponse('53300', this.closing ? 'the server is shutting down' : `too many clients on the embedded database socket (at most ${MAX_SOCKET_CLIENTS})`))
      return
    }
    const connection = new Connection(socket, this.o, this.params, () => this.connections.delete(connection))
    this.connections.add(connection)
  }
}

/** One client of the socket: its bytes, and whether it holds the session. */
class Connection {
  private buffer: Buffer = Buffer.alloc(0)
  private started = false
  /** Set while this client holds the session. */
  private release: (() => void) | undefined
  /** The transaction status of the last ReadyForQuery, or '?' after a batch without one. */
  private status: 'I' | 'T' | 'E' | '?' = 'I'
  private work: Promise<void> = Promise.resolve()
  private ended: Promise<void> | undefined
  private cancelIdle: (() => void) | undefined

  constructor(
    private readonly socket: Socket,
    private readonly o: EmbeddedSocketOptions,
    private readonly params: ReadonlyArray<readonly [string, string]>,
    private readonly onEnd: () => void,
  ) {
    socket.on('data', (chunk: Buffer) => this.received(chunk))
    socket.on('error', () => undefined) // 'close' follows
    socket.on('close', () => void this.end())
  }

  /** Ends the connection: rolls back what it left open, hands the session on. Idempotent. */
  end(reason?: string): Promise<void> {
    this.ended ??= (async () => {
      this.cancelIdle?.()
      if (reason && !this.socket.destroyed) this.socket.write(errorResponse('57P01', reason))
      this.socket.destroy()
      await this.work.catch(() => undefined)
      await this.giveBack()
      this.onEnd()
    })()
    return this.ended
  }

  private received(chunk: Buffer): void {
    if (this.ended) return
    this.buffer = this.buffer.length === 0 ? chunk : Buffer.concat([this.buffer, chunk])
    let taken: { batches: Buffer[]; terminate: boolean }
    try {
      taken = this.takeBatches()
    } catch (err) {
      void this.end((err as Error).message)
      return
    }
    for (const batch of taken.batches) {
      this.work = this.work.then(() => this.run(batch)).catch((err: Error) => {
        this.o.log.warn({ err: { message: err.message } }, 'embedded database socket: a batch failed; disconnecting the client')
        void this.end('internal error in the embedded database socket')
      })
    }
    // Terminate: the session is PGlite's, not the client's; only this connection ends.
    if (taken.terminate) this.work = this.work.then(() => void this.end())
  }

  /** Complete batches from the buffer (the startup packet answered at once); `terminate` after an X. */
  private takeBatches(): { batches: Buffer[]; terminate: boolean } {
    const batches: Buffer[] = []
    let start = 0
    let at = 0
    while (true) {
      if (!this.started) {
        if (this.buffer.length - at < 8) break
        const len = this.buffer.readInt32BE(at)
        if (len < 8 || len > 10_000) throw new Error('invalid startup packet')
        if (this.buffer.length - at < len) break
        const code = this.buffer.readInt32BE(at + 4)
        at += len
        start = at
        if (code === SSL_REQUEST || code === GSSENC_REQUEST) this.socket.write('N')
        else if (code === PROTOCOL_3) {
          this.started = true
          this.socket.write(this.welcome())
        } else if (code === CANCEL_REQUEST) {
          this.socket.destroy() // not supported: the query runs to its end
          return { batches, terminate: true }
        } else throw new Error(`unsupported protocol version ${code}`)
        continue
      }
      if (this.buffer.length - at < 5) break
      const type = String.fromCharCode(this.buffer[at]!)
      const len = this.buffer.readInt32BE(at + 1)
      if (len < 4 || len > MAX_MESSAGE_BYTES) throw new Error('invalid message length')
      if (this.buffer.length - at < 1 + len) break
      if (type === 'X') {
        if (at > start) batches.push(Buffer.from(this.buffer.subarray(start, at)))
        this.buffer = Buffer.alloc(0)
        return { batches, terminate: true }
      }
      at += 1 + len
      if (BATCH_ENDS.has(type)) {
        batches.push(Buffer.from(this.buffer.subarray(start, at)))
        start = at
      }
    }
    this.buffer = Buffer.from(this.buffer.subarray(start))
    return { batches, terminate: false }
  }

  /** Runs one batch on the session (waiting for it unless this client already holds it). */
  private async run(batch: Buffer): Promise<void> {
    if (this.ended) return
    this.cancelIdle?.()
    this.cancelIdle = undefined
    this.release ??= await this.o.session.acquire()
    if (this.ended || this.o.session.pg.closed) return
    const out = Buffer.from(await this.o.session.pg.execProtocolRaw(batch))
    this.status = lastReadyStatus(out) ?? '?'
    if (!this.socket.destroyed) this.socket.write(out)
    if (this.status === 'I') {
      this.handBack()
    } else if (!this.ended) {
      const ms = this.o.idleInTransactionMs ?? IDLE_IN_TRANSACTION_MS
      this.cancelIdle = this.o.clock.setTimer(ms, () => {
        this.o.log.warn({ idleMs: ms }, 'embedded database socket: a client was idle inside a transaction; rolled back and disconnected')
        void this.end('terminating connection due to idle-in-transaction timeout')
      })
    }
  }

  /** After a disconnect: a transaction (or half a batch) left open is rolled back, then the session goes back. */
  private async giveBack(): Promise<void> {
    if (!this.release) return
    try {
      if (this.status !== 'I' && !this.o.session.pg.closed) {
        // ROLLBACK ends an explicit block or a pending implicit one; after an error in an
        // extended batch the backend skips everything up to Sync, hence Sync and ROLLBACK again.
        const out = Buffer.from(await this.o.session.pg.execProtocolRaw(Buffer.concat([query('ROLLBACK'), SYNC, query('ROLLBACK')])))
        const status = lastReadyStatus(out)
        if (status !== 'I') this.o.log.warn({ status }, 'embedded database socket: the rollback after a lost client did not end its transaction')
        else this.o.log.info({}, 'embedded database socket: a client disconnected inside a transaction; rolled back')
      }
    } catch (err) {
      this.o.log.warn({ err: { message: (err as Error).message } }, 'embedded database socket: rollback after a lost client failed')
    } finally {
      this.status = 'I'
      this.handBack()
    }
  }

  private handBack(): void {
    const release = this.release
    this.release = undefined
    release?.()
  }

  /** AuthenticationOk, the server's parameters, BackendKeyData, ReadyForQuery. */
  private welcome(): Buffer {
    const key = Buffer.alloc(8)
    key.writeInt32BE(process.pid, 0)
    key.writeInt32BE(randomInt(2 ** 31), 4)
    return Buffer.concat([
      message('R', Buffer.alloc(4)),
      ...this.params.map(([k, v]) => message('S', Buffer.from(`${k}\0${v}\0`))),
      message('K', key),
      message('Z', Buffer.from('I')),
    ])
  }
}

/** The socket's directory: created 0700, a directory of this user (not a symlink), made 0700. */
function prepareDirectory(dir: string): void {
  mkdirSync(dir, { recursive: true, mode: 0o700 })
  const st = lstatSync(dir)
  if (!st.isDirectory()) throw new Error(`${dir} is not a directory`)
  if (typeof process.getuid === 'function' && st.uid !== process.getuid()) throw new Error(`${dir} belongs to another user`)
  chmodSync(dir, 0o700)
}

/** The caller holds the data folder's lock, so a socket already there is a crashed server's. */
function removeStaleSocket(path: string): void {
  let st
  try {
    st = lstatSync(path)
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return
    throw err
  }
  if (!st.isSocket()) throw new Error(`${path} exists and is not a socket: remove it`)
  rmSync(path, { force: true })
}

/** What a PostgreSQL server reports at startup (pg reads some of them). */
async function serverParameters(session: PGliteSession): Promise<Array<readonly [string, string]>> {
  const names = ['server_version', 'server_encoding', 'client_encoding', 'DateStyle', 'IntervalStyle', 'TimeZone', 'integer_datetimes', 'standard_conforming_strings']
  const release = await session.acquire()
  try {
    const { rows } = await session.pg.query<{ name: string; value: string }>(`select n as name, current_setting(n) as value from unnest($1::text[]) as n`, [names])
    return [...rows.map((r) => [r.name, r.value] as const), ['application_name', ''], ['is_superuser', 'on'], ['session_authorization', 'postgres']]
  } finally {
    release()
  }
}

function message(type: string, body: Buffer): Buffer {
  const head = Buffer.alloc(5)
  head.write(type, 0, 'latin1')
  head.writeInt32BE(4 + body.length, 1)
  return Buffer.concat([head, body])
}

const query = (sql: string) => message('Q', Buffer.from(`${sql}\0`))
const SYNC = message('S', Buffer.alloc(0))

function errorResponse(code: string, text: string): Buffer {
  return message('E', Buffer.from(`SFATAL\0VFATAL\0C${code}\0M${text}\0\0`))
}

/** The transaction status of the last ReadyForQuery in a backend output, if there is one. */
export function lastReadyStatus(out: Buffer): 'I' | 'T' | 'E' | undefined {
  let status: 'I' | 'T' | 'E' | undefined
  let at = 0
  while (at + 5 <= out.length) {
    const len = out.readInt32BE(at + 1)
    if (out[at] === 0x5a && len === 5 && at + 6 <= out.length) status = String.fromCharCode(out[at + 5]!) as 'I' | 'T' | 'E'
    at += 1 + len
  }
  return status
}
