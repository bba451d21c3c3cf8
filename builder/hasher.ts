import { Worker } from 'node:worker_threads'
import { Sha256 } from '../bundle/digest.js'

// The worker's whole program. Inline, so it runs the same from the TypeScript sources
// (tests) and from the compiled package, with no file of its own to find.
const PROGRAM = `
const { parentPort } = require('node:worker_threads')
const { createHash } = require('node:crypto')
const { open } = require('node:fs/promises')
const buf = Buffer.allocUnsafe(1 << 20)
// One file at a time (they share the buffer), in the order asked.
let queue = Promise.resolve()
parentPort.on('message', (m) => { queue = queue.then(() => hashOne(m)) })
async function hashOne({ id, path }) {
  try {
    const hash = createHash('sha256')
    const fh = await open(path, 'r')
    try {
      for (;;) {
        const { bytesRead } = await fh.read(buf, 0, buf.length, null)
        if (bytesRead === 0) break
        hash.update(buf.subarray(0, bytesRead))
      }
    } finally {
      await fh.close()
    }
    parentPort.postMessage({ id, hex: hash.digest('hex') })
  } catch (e) {
    parentPort.postMessage({ id, error: String(e && e.message || e) })
  }
}
`

/**
 * Hashes files on a second thread, so that checking cache entries runs on the other core
 * while the main thread packs (which hashes the tar itself). One worker, files in order.
 */
export class FileHasher {
  private worker: Worker | undefined
  private next = 0
  private pending = new Map<number, { resolve: (d: Sha256) => void; reject: (e: Error) => void }>()

  hash(path: string): Promise<Sha256> {
    if (!this.worker) {
      this.worker = new Worker(PROGRAM, { eval: true })
      this.worker.unref()
      this.worker.on('message', (m: { id: number; hex?: string; error?: string }) => {
        const p = this.pending.get(m.id)
        this.pending.delete(m.id)
        if (m.hex) p?.resolve(Sha256.fromHex(m.hex))
        else p?.reject(new Error(m.error ?? 'hash failed'))
      })
      this.worker.on('error', (e) => {
        for (const p of this.pending.values()) p.reject(e)
        this.pending.clear()
      })
    }
    const id = this.next++
    const done = new Promise<Sha256>((resolve, reject) => this.pending.set(id, { resolve, reject }))
    this.worker.postMessage({ id, path })
    return done
  }

  async close(): Promise<void> {
    await this.worker?.terminate()
    this.worker = undefined
  }
}
