import { describe, expect, it } from 'vitest'
import {
  contiguous,
  type Range,
  drop,
  rangesFrom,
  RATE_WINDOW_MS,
  SPLIT_WAIT_MS,
  SplitPolicy,
  take,
  validRanges,
  worthSplitting,
  writtenSpans,
} from '../../builder/download/ranges.js'

describe("a download's byte ranges", () => {
  it('turn the sidecar written spans into ranges, each span with the gap after it, and back', () => {
    const ranges = rangesFrom(
      [
        [100, 300],
        [500, 600],
      ],
      1000,
    )
    expect(ranges.map((r) => [r.start, r.pos, r.end])).toEqual([
      [0, 0, 100],
      [100, 300, 500],
      [500, 600, 1000],
    ])
    expect(writtenSpans(ranges)).toEqual([
      [100, 300],
      [500, 600],
    ])
    // Nothing is contiguous from byte 0 until the first gap is filled; then up to the next gap.
    expect(contiguous(ranges)).toBe(0)
    ranges[0]!.pos = 100
    expect(contiguous(ranges)).toBe(300)
    expect(rangesFrom([], Number.POSITIVE_INFINITY).map((r) => [r.start, r.pos, r.end])).toEqual([[0, 0, Number.POSITIVE_INFINITY]])
  })

  it('trust a sidecar only when it fits the file: sorted, disjoint, inside the size, and held by the file', () => {
    const side = (done: unknown, size: unknown = 1000) => ({ size, done })
    /** Two spans, as given, in a file of `fileSize` bytes pinned at 1000. */
    const fits = (a: [number, number], b: [number, number], fileSize = 30) => validRanges(side([a, b]), 1000, fileSize)
    expect(fits([0, 10], [20, 30])).toBe(true)
    expect(fits([0, 10], [20, 30], 29)).toBe(false) // the file is shorter than the sidecar says
    expect(fits([20, 30], [0, 10])).toBe(false) // not sorted
    expect(fits([0, 10], [5, 30])).toBe(false) // overlapping
    expect(validRanges(side([[0, 10]], 999), 1000, 30)).toBe(false) // another size than the pin
    expect(validRanges(side([[0, 0]]), 1000, 30)).toBe(false) // an empty span
    expect(validRanges(side('nope'), 1000, 30)).toBe(false)
  })

  it('split only a streaming range that would run longer than 300 ms at its rate, the widest first', () => {
    const now = 10_000
    const r = (pos: number, end: number, moved: number, extra = {}) => ({
      start: 0,
      pos,
      end,
      streaming: true,
      since: now - 1000,
      moved,
      stop: new AbortController(),
      ...extra,
    })
    // 1 000 bytes/s: 5 000 left is 5 s (split); 600 left is 0.6 s, still worth a request (a
    // connection capped at 5 MB/s with 3 MB left); 200 left is a fifth of a second (not worth one).
    const slow = r(0, 5000, 1000)
    const tail = r(0, 600, 1000)
    const short = r(0, 200, 1000)
    expect(worthSplitting([short, slow], now)).toBe(slow)
    expect(worthSplitting([short, tail], now)).toBe(tail)
    expect(worthSplitting([short], now)).toBeUndefined()
    // Not measured long enough, already being split, or not streaming: left alone.
    expect(worthSplitting([r(0, 5000, 1000, { since: now - 100 })], now)).toBeUndefined()
    expect(worthSplitting([r(0, 5000, 1000, { probing: true })], now)).toBeUndefined()
    expect(worthSplitting([r(0, 5000, 1000, { streaming: false })], now)).toBeUndefined()
  })

  it('cut chunk lists at a byte count without copying', () => {
    const chunks = [Buffer.from('abc'), Buffer.from('defg')]
    expect(Buffer.concat(take(chunks, 5)).toString()).toBe('abcde')
    const [rest, still] = drop(chunks, 4)
    expect(Buffer.concat(rest).toString()).toBe('efg')
    expect(still).toBe(0)
    expect(drop(chunks, 9)[1]).toBe(2)
  })
})

describe('the split policy', () => {
  const streaming = (pos: number, end: number, writingTo?: number): Range => ({ start: 0, pos, end, writingTo, streaming: true, stop: new AbortController() })

  it('probes the second half past any write in flight, waits for it a while, and cuts the parent where it stands when the probe is answered', () => {
    const policy = new SplitPolicy()
    const parent = streaming(100, 1100, 300)
    const ranges = [parent]
    const probe = policy.probe(parent, 1000)
    expect([probe.start, probe.end, parent.probing]).toEqual([700, 1100, true])
    expect(policy.waiting(ranges, 1000 + SPLIT_WAIT_MS - 1)).toBe(true)
    expect(policy.waiting(ranges, 1000 + SPLIT_WAIT_MS)).toBe(false)
    parent.pos = 800 // the parent ran past the probe's start meanwhile: the probe skips what it has
    parent.writingTo = undefined
    expect(policy.confirm(probe, ranges)).toBe(100)
    expect(ranges.map((r) => [r.start, r.pos, r.end])).toEqual([
      [0, 800, 800],
      [800, 800, 1100],
    ])
    expect(parent.probing).toBe(false)
    expect(probe.probeOf).toBeUndefined()
  })

  it('counts as waiting while its ranges stream and none has run long enough for a rate: a spare connection waits for it, not for a file later in the bundle', () => {
    const policy = new SplitPolicy()
    const fresh = { ...streaming(0, 1000), since: 1000 }
    expect(policy.waiting([fresh], 1000 + RATE_WINDOW_MS - 1)).toBe(true)
    expect(policy.waiting([fresh], 1000 + RATE_WINDOW_MS)).toBe(false)
    // One range measured is enough: a split's new half, just started, holds nothing up.
    expect(policy.waiting([{ ...streaming(0, 500), since: 0 }, fresh], 1000 + 10)).toBe(false)
  })

  it('does not take a split whose parent stopped streaming or nearly finished', () => {
    const policy = new SplitPolicy()
    const parent = streaming(0, 1000)
    const probe = policy.probe(parent, 0)
    parent.streaming = false
    expect(policy.confirm(probe, [parent])).toBeUndefined()
    const busy = streaming(0, 1000)
    const late = policy.probe(busy, 0)
    busy.pos = 999
    expect(policy.confirm(late, [busy])).toBeUndefined()
  })
})
