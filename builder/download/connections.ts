/** A transfer that can put another connection to work: one with a byte range worth splitting. */
export interface Splittable {
  /** Where its bytes go in the bundle (a path inside it): spare connections go to the first. */
  readonly order?: string | undefined
  /** Bytes left in the largest range it could split now (0: none). */
  splittable(): number
  /** Splits that range and fetches the new half on a connection the caller hands over; calls `release` when done with it. */
  split(release: () => void): void
  /**
   * Whether a split of it was just asked for and not yet answered (its ranges cannot be split
   * again until then), or its bytes have only just begun to flow (no rate known yet). A spare
   * connection waits for either rather than go to a file later in the bundle; the transfer
   * calls `offer` once it is answered or its rate is known (a quarter second at most).
   */
  splitting(): boolean
}

interface Waiter {
  priority: number
  order: string | undefined
  grant: (release: () => void) => void
}

/**
 * The build's one budget of connections (`--concurrency N`): every request that moves bytes
 * (a file, a range of one, a registry blob or manifest) holds one while it runs. Waiting
 * requests are served largest first, and of equal ones (sizes the lock does not pin) the one
 * first in the bundle, which the packer takes first. A connection that frees up when nobody
 * waits splits a range still running (half of it goes to the free connection), so the last
 * big file is not left to one connection while the others sit idle. It splits the transfer
 * that comes first in the bundle, of those worth splitting: spare connections gather on one
 * file at a time, files finish in the order the tar takes them, and packing goes on while
 * the rest download instead of waiting for big files that all finish at the end.
 */
export class Connections {
  private free: number
  /** Connections held by requests that are not urgent (splits among them), and how many of the budget they must leave to urgent ones. */
  private bulk = 0
  private reserved = 0
  private waiting: Waiter[] = []
  private transfers = new Set<Splittable>()

  /**
   * @param size connections at once
   * @param minSegment the smallest range a split leaves on either side
   */
  constructor(
    readonly size: number,
    readonly minSegment: number,
  ) {
    this.free = size
  }

  /** No budget: every request goes at once, nothing is split (the lock, tests). */
  static unlimited(): Connections {
    return new Connections(Number.POSITIVE_INFINITY, Number.POSITIVE_INFINITY)
  }

  /** Waits for a connection (a larger `priority` first; of equal ones, the `order` first in the bundle, then in turn) and returns its release. */
  acquire(priority: number, signal?: AbortSignal, order?: string): Promise<() => void> {
    if (signal?.aborted) return Promise.reject(signal.reason)
    if (this.waiting.length === 0 && this.mayTake(priority)) return Promise.resolve(this.take(priority))
    return new Promise((resolve, reject) => {
      const onAbort = () => {
        this.waiting = this.waiting.filter((w) => w !== waiter)
        reject(signal!.reason)
      }
      const waiter: Waiter = {
        priority,
        order,
        grant: (release) => {
          signal?.removeEventListener('abort', onAbort)
          resolve(release)
        },
      }
      signal?.addEventListener('abort', onAbort, { once: true })
      const at = this.waiting.findIndex((w) => w.priority < priority || (w.priority === priority && precedes(order, w.order)))
      this.waiting.splice(at < 0 ? this.waiting.length : at, 0, waiter)
      // Those waiting may be held back by the reserve while a connection is free: an urgent request takes it now.
      this.dispatch()
    })
  }

  /**
   * Keeps `n` connections (fewer than the budget) for urgent requests until the returned
   * function is called: small requests that the build waits on (image manifests) are not
   * queued behind big files that took every connection.
   */
  reserve(n: number): () => void {
    const kept = Math.min(n, this.size - 1)
    this.reserved += kept
    let done = false
    return () => {
      if (done) return
      done = true
      this.reserved -= kept
      this.dispatch()
    }
  }

  /** A transfer that may be split while it runs; `offer` when it becomes splittable. */
  register(t: Splittable): void {
    this.transfers.add(t)
  }

  unregister(t: Splittable): void {
    this.transfers.delete(t)
  }

  /** Puts idle connections to work on ranges worth splitting, while nobody waits. */
  offer(): void {
    this.dispatch()
  }

  /** Whether a request of this priority may have a connection now: one is free, and it is urgent or leaves the reserve. */
  private mayTake(priority: number): boolean {
    return this.free > 0 && (priority === Number.POSITIVE_INFINITY || this.bulk < this.size - this.reserved)
  }

  /** Takes a free connection, returning its release. */
  private take(priority: number): () => void {
    const bulk = priority !== Number.POSITIVE_INFINITY
    this.free--
    if (bulk) this.bulk++
    let released = false
    return () => {
      if (released) return
      released = true
      this.free++
      if (bulk) this.bulk--
      this.dispatch()
    }
  }

  /** Free connections go to waiting requests in turn (an urgent one past those the reserve holds back), then to splits. */
  private dispatch(): void {
    while (this.free > 0) {
      const at = this.waiting.findIndex((w) => this.mayTake(w.priority))
      if (at >= 0) {
        const [w] = this.waiting.splice(at, 1)
        w!.grant(this.take(w!.priority))
        continue
      }
      const t = this.waiting.length === 0 && this.mayTake(0) ? this.firstSplittable() : undefined
      if (!t) return
      t.split(this.take(0))
    }
  }

  /**
   * The transfer first in the bundle with a range worth splitting (of two equal, the wider;
   * one without a place comes last). None while the first is still setting up a split: the
   * spare connections of one moment all go to it, one after another, not one to each file.
   */
  private firstSplittable(): Splittable | undefined {
    let best: Splittable | undefined
    let most = 0
    for (const t of this.transfers) {
      const left = t.splittable()
      if (left < 2 * this.minSegment && !t.splitting()) continue
      if (!best || precedes(t.order, best.order) || (t.order === best.order && left > most)) [best, most] = [t, left]
    }
    return best && most >= 2 * this.minSegment ? best : undefined
  }
}

/** Whether bundle path `a` comes before `b` (no path: after every path). */
const precedes = (a: string | undefined, b: string | undefined): boolean => a !== undefined && (b === undefined || a < b)
