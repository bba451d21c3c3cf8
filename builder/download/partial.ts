import { type FileHandle, open, readFile, rm, stat } from 'node:fs/promises'
import { writeAtomic } from '../../bundle/atomic.js'
import { type Range, validRanges, writtenSpans } from './ranges.js'

/**
 * Beside a partial file whose bytes are not one prefix (a split download): the ranges whose
 * bytes were synced to disk before it was written, `{ size, done: [[start, end], ...] }`.
 * A partial file without one holds a prefix: its length is what is there.
 */
export const rangesPath = (partial: string): string => `${partial}.ranges`

/** A partial file and its sidecar, gone. */
export const discardPartial = async (partial: string): Promise<void> => {
  await rm(partial, { force: true })
  await rm(rangesPath(partial), { force: true })
}

/**
 * One transfer's partial file: opened once, whichever range writes first (ranges that start
 * together share the one handle), closed once; its sidecar written only after a sync.
 */
export class PartialFile {
  private handle: Promise<FileHandle> | undefined
  private persisting: Promise<void> = Promise.resolve()

  constructor(readonly path: string) {}

  /** The one handle, opened on first use (the file is made if it is not there). */
  open(): Promise<FileHandle> {
    this.handle ??= open(this.path, 'r+').catch(() => open(this.path, 'w+'))
    return this.handle
  }

  get isOpen(): boolean {
    return this.handle !== undefined
  }

  async close(): Promise<void> {
    const h = this.handle
    this.handle = undefined
    await (await h?.catch(() => undefined))?.close()
  }

  /**
   * What the file holds already: the synced ranges its sidecar names, or a prefix. A sidecar
   * that does not fit the file or the pinned size, or a prefix longer than the pin, is not
   * trusted: the file is discarded. Returns the total size when known, and the spans held.
   */
  async load(pinnedSize: number | undefined): Promise<{ total: number | undefined; done: [number, number][] }> {
    const st = await stat(this.path).catch(() => undefined)
    const side = await readFile(rangesPath(this.path), 'utf8')
      .then((t) => JSON.parse(t) as { size?: unknown; done?: unknown })
      .catch(() => undefined)
    if (side && st && validRanges(side, pinnedSize, st.size)) return { total: side.size as number, done: side.done as [number, number][] }
    if (side) await this.discard()
    const have = side ? 0 : (st?.size ?? 0)
    if (pinnedSize !== undefined && have > pinnedSize) {
      await this.discard()
      return { total: pinnedSize, done: [] }
    }
    return { total: pinnedSize, done: have > 0 ? [[0, have]] : [] }
  }

  /** Empties the file (the handle stays) and drops its sidecar: a transfer that starts over. */
  async empty(): Promise<void> {
    await this.persisting.catch(() => {})
    if (this.handle) await (await this.open()).truncate(0)
    await this.discard()
    await this.close()
  }

  discard(): Promise<void> {
    return discardPartial(this.path)
  }

  /** Records which ranges are on disk: synced first, so the sidecar never names bytes a crash lost. */
  persist(now: () => { total: number | undefined; ranges: readonly Range[] }): Promise<void> {
    this.persisting = this.persisting.then(async () => {
      const { total, ranges } = now()
      if (!this.handle || total === undefined) return
      const done = writtenSpans(ranges)
      await (await this.open()).datasync()
      await writeAtomic(rangesPath(this.path), JSON.stringify({ size: total, done }))
    })
    return this.persisting
  }
}
