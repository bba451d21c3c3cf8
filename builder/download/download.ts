import { mkdir } from 'node:fs/promises'
import { dirname } from 'node:path'
import { integrityError, type Sha256 } from '../../bundle/digest.js'
import type { KaError } from '../../bundle/errors.js'
import { type HttpOptions, redactUrl } from './http.js'
import { discardPartial } from './partial.js'
import { Transfer } from './transfer.js'

export { rangesPath } from './partial.js'
export interface DownloadRequest {
  /** Names the artifact in messages ("containerd 1.7.16 linux/amd64"). */
  what: string
  url: string
  /** Where the bytes accumulate; kept across crashes so a rerun resumes what is there. */
  partial: string
  expected?: Sha256
  size?: number
  onBytes?: (n: number) => void
  /** The file's size, once the server says it (Content-Length, Content-Range) and the lock did not. */
  onSize?: (total: number) => void
  /** Bytes `[0, n)` are in the partial file, written, and stay as they are unless `onDiscard` comes first. */
  onPrefix?: (n: number) => void
  /** Every byte told of so far is void: the download starts over from byte 0 (or fails). */
  onDiscard?: () => void
  /** Stops the download (the partial file stays, to be resumed). */
  signal?: AbortSignal
  /** Everything else waits on it: it takes the next free connection, whatever its size. */
  urgent?: boolean
  /** Where it goes in the bundle: of equal waiting requests the first goes first, and spare connections split the download that comes first (see `Connections`). */
  order?: string
  /** Extra request headers, asked for before every request (a registry token may expire). */
  headers?: () => Promise<Record<string, string>>
  /** Called on a 401 with the server's challenge; true when new credentials are worth a retry. */
  onUnauthorized?: (challenge: string | undefined) => Promise<boolean>
  /** Turns a final HTTP failure into the error to throw (registries explain theirs in JSON). */
  onHttpError?: (status: number, body: string) => KaError | undefined
}

export interface Downloaded {
  digest: Sha256
  size: number
  /** Requests sent (1 for a clean download). */
  requests: number
}

/**
 * Downloads `url` into `partial`, resuming with HTTP Range whatever is there already,
 * retrying transient failures, hashing every byte that lands in the file (those kept from
 * an earlier attempt too). With a connection budget (`opts.connections`), a large file is
 * split into ranges fetched on several connections as they free up. Returns the digest;
 * when `expected` is given, a mismatch deletes the partial file and throws EINTEGRITY.
 * Never renames anything: the caller moves the verified file into the cache.
 */
export async function download(req: DownloadRequest, opts: HttpOptions): Promise<Downloaded> {
  await mkdir(dirname(req.partial), { recursive: true })
  let resumedFromDisk = false
  let restarted = false
  for (;;) {
    const result = await new Transfer(req, opts).run()
    resumedFromDisk ||= result.resumed
    if (!req.expected || result.digest.equals(req.expected)) return result
    await discardPartial(req.partial)
    req.onDiscard?.()
    // Bytes kept from an earlier run may belong to an older upstream file; start once from
    // zero before blaming the server.
    if (resumedFromDisk && !restarted) {
      restarted = true
      resumedFromDisk = false
      continue
    }
    // Whose bytes, and what to do: a mirror that serves other bytes, or an upstream that changed a released file.
    const e = integrityError(`${req.what} from ${redactUrl(req.url)}`, req.expected, result.digest, { url: redactUrl(req.url) })
    e.message +=
      ': not the bytes the lock pins, so nothing was kept; if that is a mirror, it serves other bytes (fetch without it); if it is upstream, the file changed since the lock was made: check why before you run bundle lock again'
    throw e
  }
}
