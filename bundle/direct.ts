import { constants } from 'node:fs'
import { type FileHandle, open } from 'node:fs/promises'

/** Bytes per write, and where a write may start: a multiple of every disk's logical block. */
const CHUNK = 1 << 20
/** Chunks staged or being written at once: the next fills while the ones before it are on their way to the disk. */
const DEPTH = 3
/** The logical block O_DIRECT asks offsets and lengths to be multiples of (4096-byte disks answer EINVAL, and are written the other way). */
const BLOCK = 512
const WASM_PAGE = 64 << 10

/**
 * Writes a file's bytes past the page cache (O_DIRECT), in chunks at their offsets: a large
 * file nothing will read back soon (the bundle's tar, its parts) costs the CPU no copy into
 * freshly allocated pages of the page cache, and no writeback of them later, which is most
 * of what writing it costs (on a VM, where the host backs each new page on first touch, far
 * the most). The caller hashes what it pushes, as ever; the bytes are on the disk once
 * `end` resolves, and the caller's `datasync` still makes them and the file's size durable.
 *
 * O_DIRECT needs aligned memory: the chunks live in a WebAssembly memory, which the engine
 * maps page-aligned (a Buffer's bytes are not). What the disk or file system refuses
 * (EINVAL: no O_DIRECT there, a tail that is not whole blocks, an unaligned first chunk after
 * a kept prefix) is written through the page cache instead, at the same offset.
 */
export class DirectWriter {
  private readonly memory = Buffer.from(new WebAssembly.Memory({ initial: (CHUNK * DEPTH) / WASM_PAGE, maximum: (CHUNK * DEPTH) / WASM_PAGE }).buffer)
  private readonly writing: (Promise<void> | undefined)[] = new Array(DEPTH)
  private slot = 0
  /** O_DIRECT refused a whole aligned chunk: this file system does not take it, and is not asked again. */
  private refused = false
  /** Where the current chunk's staged bytes start, inside it. */
  private from: number
  private failure: unknown

  private constructor(
    private direct: FileHandle | undefined,
    private readonly buffered: FileHandle,
    /** The offset of the next byte pushed. */
    private pos: number,
  ) {
    this.from = pos % CHUNK
  }

  /**
   * A writer for the file behind `buffered`, from byte `at` on. The file is opened again
   * through /proc/self/fd, so that it is the very same file (never a path someone could
   * swap); where that or O_DIRECT is not there, every byte goes through `buffered`.
   */
  static async open(buffered: FileHandle, at: number): Promise<DirectWriter> {
    const flag = (constants as { O_DIRECT?: number }).O_DIRECT
    const direct = flag ? await open(`/proc/self/fd/${buffered.fd}`, constants.O_WRONLY | flag).catch(() => undefined) : undefined
    return new DirectWriter(direct, buffered, at)
  }

  /** Stages `buf` (it may be reused once this resolves); full chunks go to the disk in the background. */
  async push(buf: Buffer): Promise<void> {
    for (let off = 0; off < buf.length; ) {
      const inChunk = this.pos % CHUNK
      if (inChunk === this.from) await this.writing[this.slot]
      this.check()
      const n = Math.min(buf.length - off, CHUNK - inChunk)
      buf.copy(this.memory, this.slot * CHUNK + inChunk, off, off + n)
      off += n
      this.pos += n
      if (this.pos % CHUNK === 0) this.flush(CHUNK)
    }
  }

  /** Writes what is staged and waits for every write; the O_DIRECT handle is closed. */
  async end(): Promise<void> {
    const inChunk = this.pos % CHUNK
    if (inChunk !== this.from) this.flush(inChunk)
    await Promise.all(this.writing)
    await this.close()
    this.check()
  }

  async close(): Promise<void> {
    await Promise.allSettled(this.writing)
    const d = this.direct
    this.direct = undefined
    await d?.close().catch(() => {})
  }

  private check(): void {
    if (this.failure !== undefined) throw this.failure
  }

  /** Sends the current chunk's staged bytes, up to `to` inside it, and moves to the next slot. */
  private flush(to: number): void {
    const base = this.slot * CHUNK
    const at = this.pos - (this.pos % CHUNK || CHUNK) + this.from
    const w = this.write(this.memory.subarray(base + this.from, base + to), at)
    this.writing[this.slot] = w.catch((e: unknown) => {
      this.failure ??= e
    })
    this.slot = (this.slot + 1) % DEPTH
    this.from = 0
  }

  private async write(b: Buffer, at: number): Promise<void> {
    let done = 0
    if (this.direct && !this.refused && at % BLOCK === 0 && b.length % BLOCK === 0) {
      try {
        while (done < b.length) done += (await this.direct.write(b, done, b.length - done, at + done)).bytesWritten
        return
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'EINVAL') throw e
        if (b.length === CHUNK) this.refused = true
      }
    }
    while (done < b.length) done += (await this.buffered.write(b, done, b.length - done, at + done)).bytesWritten
  }
}
