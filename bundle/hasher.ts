import { Worker } from 'node:worker_threads'
import { Sha256 } from './digest.js'

// The worker's whole program. Inline, so it runs the same from the TypeScript sources
// (tests) and from the compiled package, with no file of its own to find. Every request is
// done in the order it came (they share one buffer).
const PROGRAM = `
const { parentPort } = require('node:worker_threads')
const { createHash } = require('node:crypto')
const { open } = require('node:fs/promises')
const buf = Buffer.allocUnsafe(1 << 20)
const prefixes = new Map()
let queue = Promise.resolve()
parentPort.on('message', (m) => { queue = queue.then(() => handle(m)) })
async function hashRange(p, path, to) {
  p.fh ??= await open(path, 'r')
  while (p.pos < to) {
    const { bytesRead } = await p.fh.read(buf, 0, Math.min(buf.length, to - p.pos), p.pos)
    if (bytesRead === 0) throw new Error(path + ': ends at byte ' + p.pos + ', not ' + to)
    p.hash.update(buf.subarray(0, bytesRead))
    p.pos += bytesRead
  }
}
function drop(key) {
  const p = prefixes.get(key)
  prefixes.delete(key)
  return p && p.fh && p.fh.close().catch(() => {})
}
async function handle(m) {
  try {
    if (m.op === 'file') {
      const hash = createHash('sha256')
      const fh = await open(m.path, 'r')
      try {
        for (;;) {
          const { bytesRead } = await fh.read(buf, 0, buf.length, null)
          if (bytesRead === 0) break
          hash.update(buf.subarray(0, bytesRead))
        }
      } finally {
        await fh.close()
      }
      return parentPort.postMessage({ id: m.id, hex: hash.digest('hex') })
    }
    let p = prefixes.get(m.key)
    if (!p) prefixes.set(m.key, (p = { hash: createHash('sha256'), pos: 0, fh: undefined, error: undefined }))
    if (m.op === 'grow') {
      if (!p.error && m.upTo > p.pos) await hashRange(p, m.path, m.upTo).catch((e) => (p.error = String(e && e.message || e)))
      return
    }
    if (m.op === 'forget') return await drop(m.key)
    if (m.op === 'end') await drop(m.key)
    if (p.error) throw new Error(p.error)
    const hex = (m.op === 'peek' ? p.hash.copy() : p.hash).digest('hex')
    parentPort.postMessage({ id: m.id, hex, size: p.pos })
  } catch (e) {
    parentPort.postMessage({ id: m.id, error: String(e && e.message || e) })
  }
}
`

type Reply = { id: number; hex?: string; size?: number; error?: string }

/**
 * One worker thread for the process's hashing, so that it runs on the other core while the
 * main thread moves bytes: whole files (cache entries found, not fetched; a bundle folder's
 * files as it is verified) and files that grow (a download's prefix, hashed as it lengthens).
 */
class HashWorker {
  private worker: Worker | undefined
  private next = 0
  private pending = new Map<number, { resolve: (r: Reply) => void; reject: (e: Error) => void }>()

  /** The worker, started if it is not (a thread takes about a tenth of a second to start); idle, it keeps no process alive. */
  start(): Worker {
    if (!this.worker) {
      this.worker = new Worker(PROGRAM, { eval: true })
      this.worker.on('message', (r: Reply) => {
        const p = this.pending.get(r.id)
        this.pending.delete(r.id)
        if (this.pending.size === 0) this.worker?.unref()
        if (r.error === undefined) p?.resolve(r)
        else p?.reject(new Error(r.error))
      })
      this.worker.on('error', (e) => {
        for (const p of this.pending.values()) p.reject(e)
        this.pending.clear()
        this.worker = undefined
      })
      // After the listeners: adding the 'message' one refs the worker again.
      this.worker.unref()
    }
    return this.worker
  }

  post(m: Record<string, unknown>): void {
    this.start().postMessage(m)
  }

  /** A request with an answer: the worker keeps the process alive until it comes (it is unref'd while idle). */
  ask(m: Record<string, unknown>): Promise<Reply> {
    const id = this.next++
    const reply = new Promise<Reply>((resolve, reject) => this.pending.set(id, { resolve, reject }))
    this.post({ ...m, id })
    this.worker?.ref()
    return reply
  }
}

const shared = new HashWorker()

/** Starts the hash worker now, so that the first download's hash does not wait for it to start. */
export const warmHasher = (): void => void shared.start()

/** Hashes a whole file on the worker (files are hashed in the order asked). */
export const hashFile = async (path: string): Promise<Sha256> => Sha256.fromHex((await shared.ask({ op: 'file', path })).hex!)

let prefixes = 0

/** A prefix is handed to the worker in steps of at least this: a socket's many small writes are one read back there. */
const GROW_STEP = 1 << 20

/**
 * The sha256 of a file's first bytes as they are written, taken on the worker: `grow(n)`
 * once bytes `[0, n)` are in the file (it reads them back, from the page cache, through a
 * handle it keeps open until `digest` or `forget`), `digest()` at the end. Memory stays
 * flat: nothing but the length crosses the threads.
 */
export class PrefixHash {
  private readonly key = prefixes++
  private posted = 0
  private known = 0

  constructor(private readonly path: string) {}

  grow(upTo: number): void {
    this.known = Math.max(this.known, upTo)
    if (this.known - this.posted >= GROW_STEP) this.post()
  }

  /** The hash of what was hashed so far (the hash goes on). */
  async peek(): Promise<{ digest: Sha256; size: number }> {
    this.post()
    const r = await shared.ask({ op: 'peek', key: this.key })
    return { digest: Sha256.fromHex(r.hex!), size: r.size! }
  }

  /** The hash of the whole prefix; the state is dropped. */
  async digest(): Promise<{ digest: Sha256; size: number }> {
    this.post()
    const r = await shared.ask({ op: 'end', key: this.key })
    return { digest: Sha256.fromHex(r.hex!), size: r.size! }
  }

  private post(): void {
    if (this.known <= this.posted) return
    this.posted = this.known
    shared.post({ op: 'grow', key: this.key, path: this.path, upTo: this.posted })
  }

  forget(): void {
    shared.post({ op: 'forget', key: this.key })
  }
}
