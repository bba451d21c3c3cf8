/**
 * A download's byte ranges as data: which parts of the partial file are written, what its
 * sidecar may claim, where the hash may read up to, and which range is worth splitting.
 * No I/O: the transfer (download.ts) does the requests and the writes.
 */

/** Bytes `[start, pos)` of the file are written; the range ends at `end` (exclusive; Infinity while the size is unknown). */
export interface Range {
  start: number
  pos: number
  end: number
  /** The end of the write in flight: a split never cuts below it. */
  writingTo?: number
  /** A response body is flowing into it, since when, and how many bytes it brought: its rate. */
  streaming?: boolean
  since?: number
  moved?: number
  /** A split of it is being tried. */
  probing?: boolean
  /** A split not yet confirmed by a 206: the range it would cut. */
  probeOf?: Range
  /** Given up on (the download started over): its worker ends quietly. */
  stop: AbortController
}

/** The ranges of a file whose written spans are `done` (sorted, disjoint): each span and the gap after it are one range; a gap at the start is one too. */
export function rangesFrom(done: readonly (readonly [number, number])[], end: number): Range[] {
  const out: Range[] = []
  if (done[0]?.[0] !== 0) out.push({ start: 0, pos: 0, end: done[0]?.[0] ?? end, stop: new AbortController() })
  for (const [i, [a, b]] of done.entries()) out.push({ start: a, pos: b, end: done[i + 1]?.[0] ?? end, stop: new AbortController() })
  return out
}

/** The written spans, as the sidecar records them. */
export const writtenSpans = (ranges: readonly Range[]): [number, number][] => ranges.filter((x) => x.pos > x.start).map((x) => [x.start, x.pos])

/** Where the bytes written from byte 0 on end: what the hash may take. */
export function contiguous(ranges: readonly Range[]): number {
  let at = 0
  for (const r of ranges) {
    if (r.start > at) break
    at = Math.max(at, r.pos)
    if (r.pos < r.end) break
  }
  return at
}

/**
 * A range is split only when, at its rate so far (measured over at least RATE_WINDOW_MS), it
 * has more than this left to run: a few round trips, so that on a link one connection fills
 * nothing is split, while a connection capped at 5 MB/s does not finish a file's last 2-5 MB
 * alone with the others idle (a second there cost 10% of the per-connection benchmark).
 */
const SPLIT_AFTER_MS = 300
export const RATE_WINDOW_MS = 250

/**
 * The split policy: the streaming range with the most bytes still to come that a split
 * could take half of, if it is worth it: at the rate it runs, it would take more than
 * SPLIT_AFTER_MS longer. On a link that one connection fills, a split would only add requests.
 */
export function worthSplitting(ranges: readonly Range[], now: number): Range | undefined {
  let widest: Range | undefined
  const left = (r: Range) => r.end - (r.writingTo ?? r.pos)
  for (const r of ranges) {
    if (!r.streaming || r.probing || (widest && left(r) <= left(widest))) continue
    const ran = now - (r.since ?? now)
    const rate = ran >= RATE_WINDOW_MS ? (r.moved ?? 0) / ran : 0
    if (ran >= RATE_WINDOW_MS && left(r) > rate * SPLIT_AFTER_MS) widest = r
  }
  return widest
}

/**
 * The longest a spare connection waits for a split to be answered before it goes to a file
 * later in the bundle: a round trip on most links; a server slow to answer ranges keeps
 * nothing idle for long.
 */
export const SPLIT_WAIT_MS = 250

/**
 * One transfer's split policy, apart from the transfer's I/O (as aria2 keeps its piece
 * selector apart from the bitfield): which range to split, the probe that asks for its second
 * half, whether that probe is still unanswered, and where a confirmed probe cuts its parent.
 */
export class SplitPolicy {
  private askedAt = Number.NEGATIVE_INFINITY

  /** The range a split would take half of (see worthSplitting). */
  candidate(ranges: readonly Range[], now: number): Range | undefined {
    return worthSplitting(ranges, now)
  }

  /** A probe for the second half of `r`, not yet part of the ranges: a 206 at its start confirms it. */
  probe(r: Range, now: number): Range {
    const from = r.writingTo ?? r.pos
    const mid = from + Math.floor((r.end - from) / 2)
    r.probing = true
    this.askedAt = now
    return { start: mid, pos: mid, end: r.end, probeOf: r, stop: new AbortController() }
  }

  /**
   * A split was asked for and not yet answered (for at most SPLIT_WAIT_MS), or the transfer's
   * bytes flow and no range has run long enough for its rate (at most RATE_WINDOW_MS, when
   * the transfer offers spare connections again): either way it may be worth a split in a
   * moment, and a spare connection waits for that rather than go to a file later in the bundle.
   */
  waiting(ranges: readonly Range[], now: number): boolean {
    if (ranges.some((r) => r.probing) && now - this.askedAt < SPLIT_WAIT_MS) return true
    const flowing = ranges.filter((r) => r.streaming && r.since !== undefined)
    return flowing.length > 0 && flowing.every((r) => now - r.since! < RATE_WINDOW_MS)
  }

  /**
   * A 206 answered `probe`: it joins `ranges` after its parent, which now ends where the probe
   * starts (past any write in flight). Returns how many bytes of the answer to skip, or
   * undefined when the parent moved on and the split is not worth taking.
   */
  confirm(probe: Range, ranges: Range[]): number | undefined {
    const parent = probe.probeOf!
    const cut = Math.max(probe.start, parent.writingTo ?? parent.pos)
    if (!parent.streaming || parent.end !== probe.end || cut >= parent.end - 1) return undefined
    const skip = cut - probe.start
    parent.end = probe.start = probe.pos = cut
    parent.probing = false
    probe.probeOf = undefined
    ranges.splice(ranges.indexOf(parent) + 1, 0, probe)
    return skip
  }
}

/** A sidecar that fits the file: sorted, disjoint ranges inside its size, the file long enough to hold them. */
export function validRanges(side: { size?: unknown; done?: unknown }, size: number | undefined, fileSize: number): boolean {
  if (!Number.isSafeInteger(side.size) || (size !== undefined && side.size !== size) || !Array.isArray(side.done)) return false
  let last = 0
  for (const d of side.done as unknown[]) {
    if (!Array.isArray(d) || d.length !== 2 || !Number.isSafeInteger(d[0]) || !Number.isSafeInteger(d[1])) return false
    const [a, b] = d as [number, number]
    if (a < last || b <= a || b > (side.size as number) || b > fileSize) return false
    last = b
  }
  return true
}

/** The chunks without their first `n` bytes, and how many of those are still to come. */
export function drop(chunks: Buffer[], n: number): [Buffer[], number] {
  const out: Buffer[] = []
  let left = n
  for (const c of chunks) {
    if (left >= c.length) left -= c.length
    else {
      out.push(left ? c.subarray(left) : c)
      left = 0
    }
  }
  return [out, left]
}

/** The first `n` bytes of the chunks. */
export function take(chunks: Buffer[], n: number): Buffer[] {
  const out: Buffer[] = []
  let left = n
  for (const c of chunks) {
    if (left <= 0) break
    out.push(c.length <= left ? c : c.subarray(0, left))
    left -= c.length
  }
  return out
}
