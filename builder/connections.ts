/** A transfer that can put another connection to work: one with a byte range worth splitting. */
export interface Splittable {
  /** Where its bytes go in the bundle (a path inside it): spare connections go to the first. */
  readonly order?: string | undefined
  /** Bytes left in the largest range it could split now (0: none). */
  splittable(): number
  /** Splits that range and fetches the new half on a connection the caller hands over; calls `release` when done with it. */
  split(release: () => void): void
}

interface Waiter {
  priority: number
  grant: (release: () => void) => void
}

/**
 * The build's one budget of connections (`--concurrency N`): every request that moves bytes
 * (a file, a range of one, a registry blob or manifest) holds one while it runs. Waiting
 * requests are served largest first. A connection that frees up when nobody waits splits a
 * range still running (half of it goes to the free connection), so the last big file is not
 * left to one connection while the others sit idle. It splits the transfer that comes first
 * in the bundle, of those worth splitting: spare connections gather on one file at a time,
 * files finish in the order the tar takes them, and packing goes on while the rest download
 * instead of waiting for big files that all finish at the end.
 */
export class Connections {
  private free: number
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

  /** Waits for a connection (a larger `priority` first; equal ones in turn) and returns its release. */
  acquire(priority: number, signal?: AbortSignal): Promise<() => void> {
    if (signal?.aborted) return Promise.reject(signal.reason)
    if (this.free > 0 && this.waiting.length === 0) {
      this.free--
      return Promise.resolve(this.releaser())
    }
    return new Promise((resolve, reject) => {
      const onAbort = () => {
        this.waiting = this.waiting.filter((w) => w !== waiter)
        reject(signal!.reason)
      }
      const waiter: Waiter = {
        priority,
        grant: (release) => {
          signal?.removeEventListener('abort', onAbort)
          resolve(release)
        },
      }
      const at = this.waiting.findIndex((w) => w.priority < priority)
      this.waiting.splice(at < 0 ? this.waiting.length : at, 0, waiter)
      signal?.addEventListener('abort', onAbort, { once: true })
    })
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
    while (this.free > 0 && this.waiting.length === 0) {
      const t = this.firstSplittable()
      if (!t) return
      this.free--
      t.split(this.releaser())
    }
  }

  private releaser(): () => void {
    let released = false
    return () => {
      if (released) return
      released = true
      this.handOn()
    }
  }

  private handOn(): void {
    const next = this.waiting.shift()
    const t = next ? undefined : this.firstSplittable()
    if (next) next.grant(this.releaser())
    else if (t) t.split(this.releaser())
    else this.free++
  }

  /** The transfer first in the bundle with a range worth splitting (of two equal, the wider; one without a place comes last). */
  private firstSplittable(): Splittable | undefined {
    let best: Splittable | undefined
    let most = 0
    for (const t of this.transfers) {
      const left = t.splittable()
      if (left < 2 * this.minSegment) continue
      if (!best || precedes(t.order, best.order) || (t.order === best.order && left > most)) [best, most] = [t, left]
    }
    return best
  }
}

/** Whether bundle path `a` comes before `b` (no path: after every path). */
const precedes = (a: string | undefined, b: string | undefined): boolean => a !== undefined && (b === undefined || a < b)
