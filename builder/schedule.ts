import type { Connections } from './download/connections.js'
import type { Fetcher, Item } from './download/fetcher.js'

/**
 * The order a build asks for its bytes in, as data. Every request holds a connection of one
 * budget (`--concurrency`); the schedule decides only what is asked for when:
 *
 * 1. every host the build still needs, checked at once (a user behind a firewall learns every
 *    unreachable one in one line);
 * 2. the urgent files: Calico's manifest at once (small, and the closed world reads it), the
 *    Node.js runtime's tarball once the hosts answered (SHA256SUMS names the binary in it);
 * 3. the image manifests, under a reserve of half the connections (the closed world and the
 *    packing wait on them, and they would otherwise queue behind the first big files);
 * 4. every other file, in the order the tar takes them, once the hosts and Calico's manifest
 *    are in (a build the closed world refuses keeps what came, in the cache);
 * 5. the image blobs, in bundle order, once the closed world holds.
 *
 * Downloads of equal rank start in bundle order, and spare connections split the download
 * that comes first, so packing keeps up with them (connections.ts).
 */
export interface ScheduledFiles {
  /** The Kubernetes manifests the bundle carries (its CNI's, each add-on's): the closed world reads them. */
  manifests: Item[]
  /** The Node.js runtime's tarball (an image bundle has none). */
  runtime?: Item
  /** Every other file the bundle carries. */
  files: Item[]
}

export class Schedule {
  constructor(
    private readonly fetcher: Fetcher,
    private readonly connections: Connections,
  ) {}

  /** Steps 1, 2 and 4: returns when the manifests are in (or one failed); the rest runs on. */
  files(hostsChecked: Promise<void>, s: ScheduledFiles): Promise<void> {
    const manifests = Promise.all(s.manifests.map((m) => this.fetcher.ensure(m))).then(() => {})
    if (s.runtime) void hostsChecked.then(() => this.fetcher.ensure(s.runtime!)).catch(() => {})
    void Promise.all([hostsChecked, manifests]).then(
      () => this.inOrder(s.files),
      () => {},
    )
    return manifests
  }

  /** Step 3: `work` (the image manifests) with half the connections kept free for it. */
  async manifests<T>(work: () => Promise<T>): Promise<T> {
    const unreserve = this.connections.reserve(Math.floor(this.connections.size / 2))
    return work().finally(unreserve)
  }

  /** Step 5: the image blobs, in bundle order. */
  blobs(blobs: Item[]): void {
    this.inOrder(blobs)
  }

  /** Asks for every item in the order the tar takes them; each failure is the fetcher's to report. */
  private inOrder(items: Item[]): void {
    for (const i of bundleOrder(items)) void this.fetcher.ensure(i).catch(() => {})
  }
}

/** Items in the order the tar takes them. */
export const bundleOrder = (list: Item[]): Item[] => [...list].sort((a, b) => (a.rel < b.rel ? -1 : a.rel > b.rel ? 1 : 0))
