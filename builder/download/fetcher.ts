import { setMaxListeners } from 'node:events'
import { stat } from 'node:fs/promises'
import type { Sha256 } from '../../bundle/digest.js'
import type { Cache } from './cache.js'
import { hashFile } from '../../bundle/hasher.js'
import type { Downloaded, DownloadRequest } from './download.js'
import type { Progress } from '../progress.js'

/**
 * One piece of content the bundle carries, kept in the cache by its digest: a pinned
 * upstream file, an OS package or an image blob. `fetch` is the source: it brings raw bytes
 * into a partial file; the fetcher alone decides what enters the cache.
 */
export interface Item {
  /** Its path inside the bundle. */
  rel: string
  digest: Sha256
  size?: number
  mode?: number
  label: string
  /** Shown as one progress row with the others of its group (an image's blobs). */
  group?: string
  fetch(partial: string, hooks: FetchHooks): Promise<Downloaded>
}

/** What a source reports while it brings bytes into the partial file, as `download` takes them. */
export type FetchHooks = Required<Pick<DownloadRequest, 'onBytes' | 'signal' | 'onSize' | 'onPrefix' | 'onDiscard'>>

/**
 * A download under way, as packing follows it: bytes `[0, bytes)` of its partial file are
 * written and final, until the source starts over (a server that ignored Range, bytes kept
 * from an older upstream file): then this view is void, and a new one follows the new bytes.
 * Packing copies an entry into the tar while it downloads, so the tar is done moments after
 * its last byte; whether the bytes were the pinned ones is known when the fetch commits.
 */
export class Growing {
  bytes = 0
  total: number | undefined
  /** Void: the source started over; what was copied from it must be copied again. */
  void = false
  /** The fetch is over: committed (the partial file is the cache entry now) or failed. */
  ended = false
  private waiting: (() => void)[] = []

  constructor(
    readonly path: string,
    total: number | undefined,
  ) {
    this.total = total
  }

  /** Resolves once bytes `[0, n)` are final; rejects if this view goes void or the fetch ends without them. */
  async reach(n: number): Promise<void> {
    for (;;) {
      if (this.void) throw new StartedOver()
      if (this.bytes >= n) return
      if (this.ended) throw new Cancelled()
      await this.next()
    }
  }

  /** The file's size once known; undefined if the fetch ended without saying. */
  async size(): Promise<number | undefined> {
    while (this.total === undefined && !this.ended && !this.void) await this.next()
    return this.total
  }

  update(change: { bytes?: number; total?: number; void?: true; ended?: true }): void {
    Object.assign(this, change)
    for (const wake of this.waiting.splice(0)) wake()
  }

  private next(): Promise<void> {
    return new Promise((resolve) => this.waiting.push(resolve))
  }
}

/** The bytes a packing followed were thrown away by their source: the packing starts over. */
export class StartedOver extends Error {
  constructor() {
    super('the download started over while it was being packed')
  }
}

/** A fetch that never ran, or was stopped, because another one failed first. */
export class Cancelled extends Error {
  constructor() {
    super('stopped: another download failed')
  }
}

/**
 * Brings items into the cache, all at once (the connection budget in the items' sources
 * decides what moves when) and each at most once, as pacote's fetcher does: sources return
 * bytes, and this is the one place that checks them against the digest the item asked for
 * and commits them. An entry found in the cache
 * is not trusted by name: it is hashed again on a second thread (`check`), so that packing,
 * which reads it anyway, can tell a damaged entry.
 */
export class Fetcher {
  readonly downloaded = new Set<string>()
  readonly sizes = new Map<string, number>()
  downloadedBytes = 0
  private checking = new Map<string, Promise<Sha256>>()
  private inflight = new Map<string, Promise<void>>()
  private growing = new Map<string, Growing>()
  // The first failure stops the others: the user sees its error last, at once. What the
  // others had downloaded stays in the cache's partial files, to be resumed next time.
  private readonly abort = new AbortController()

  constructor(private readonly o: { cache: Cache; progress: Progress }) {
    // Every download listens to it, all at once (each waits for a connection of the budget).
    setMaxListeners(0, this.abort.signal)
  }

  /** Resolves when the item is in the cache. */
  ensure(item: Item): Promise<void> {
    let p = this.inflight.get(item.digest.hex)
    if (!p) {
      p = this.fetchOne(item)
      p.catch((e: unknown) => this.abort.abort(e))
      this.inflight.set(item.digest.hex, p)
    }
    return p
  }

  /** The digest of a cache entry that was found rather than fetched, once computed. */
  check(item: Item): Promise<Sha256> | undefined {
    return this.checking.get(item.digest.hex)
  }

  /** The download of `item` under way, to follow as it grows (none when it is cached, done, or not started). */
  following(item: Item): Growing | undefined {
    return this.growing.get(item.digest.hex)
  }

  /** Where an item's content is, once `ensure` resolved. */
  pathOf(item: Item): string {
    return this.o.cache.blobPath(item.digest)
  }

  /** Forgets a damaged entry, so that the next `ensure` fetches it again. */
  async evict(item: Item): Promise<void> {
    await Promise.allSettled(this.inflight.values())
    await this.o.cache.evict(item.digest)
    this.checking.delete(item.digest.hex)
    this.inflight.delete(item.digest.hex)
  }

  /** Stops every fetch after `e`, and returns the failure to show: the first real one, not a cancellation it caused. */
  async stop(e: unknown): Promise<unknown> {
    this.abort.abort(e)
    const results = await Promise.allSettled(this.inflight.values())
    return results.find((r): r is PromiseRejectedResult => r.status === 'rejected' && !(r.reason instanceof Cancelled))?.reason
  }

  private async fetchOne(item: Item): Promise<void> {
    const signal = this.abort.signal
    if (signal.aborted) throw new Cancelled()
    const blob = this.o.cache.blobPath(item.digest)
    const have = await stat(blob).catch(() => undefined)
    if (have && (item.size === undefined || have.size === item.size)) {
      this.sizes.set(item.digest.hex, have.size)
      if (!this.downloaded.has(item.digest.hex)) this.checking.set(item.digest.hex, hashFile(blob))
      this.o.progress.note(`cached   ${item.label}`)
      return
    }
    if (have) await this.o.cache.evict(item.digest)
    const id = item.digest.hex
    // A row once bytes move (or are found kept from an earlier run), not while it waits for a connection.
    let shown = false
    const show = () => {
      if (!shown) this.o.progress.start(id, item.label, item.size, item.group)
      shown = true
    }
    const partial = this.o.cache.partialPath(item.digest.hex)
    let growing = new Growing(partial, item.size)
    this.growing.set(id, growing)
    let got: Downloaded
    try {
      got = await item.fetch(partial, {
        onBytes: (n) => {
          show()
          this.o.progress.advance(id, n)
        },
        signal,
        onSize: (total) => {
          this.o.progress.sized(id, total)
          growing.update({ total })
        },
        onPrefix: (bytes) => growing.update({ bytes }),
        onDiscard: () => {
          growing.update({ void: true })
          growing = new Growing(partial, item.size ?? growing.total)
          this.growing.set(id, growing)
        },
      })
    } catch (e) {
      throw signal.aborted && signal.reason !== e ? new Cancelled() : e
    } finally {
      growing.update({ ended: true })
      this.growing.delete(id)
    }
    // Whatever the source says, only the digest the item asked for enters the cache under it.
    await this.o.cache.commit(partial, got.digest, item.digest, item.label)
    this.downloadedBytes += got.size
    this.downloaded.add(item.digest.hex)
    this.sizes.set(item.digest.hex, got.size)
    show()
    this.o.progress.done(id, 'fetched')
  }
}
