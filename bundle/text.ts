/** The known word closest to `word` (edit distance at most 3), for "did you mean" hints. */
export function nearest(word: string, known: readonly string[]): string | undefined {
  let best: string | undefined
  let bestDistance = 4
  for (const k of known) {
    const d = distance(word.toLowerCase(), k.toLowerCase())
    if (d < bestDistance) [best, bestDistance] = [k, d]
  }
  return best
}

function distance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j)
  for (let i = 1; i <= a.length; i++) {
    const row = [i]
    for (let j = 1; j <= b.length; j++) {
      row[j] = Math.min(prev[j]! + 1, row[j - 1]! + 1, prev[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1))
    }
    prev = row
  }
  return prev[b.length]!
}

export const didYouMean = (word: string, known: readonly string[]): string => {
  const n = nearest(word, known)
  return n ? ` (did you mean ${JSON.stringify(n)}?)` : ''
}

/** Controls that act on a terminal or reorder what it shows: C0 and C1, DEL, and the bidirectional marks and overrides. */
const CONTROLS = /[\u0000-\u0009\u000b-\u001f\u007f-\u009f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]/g
const escaped = (c: string): string => {
  const n = c.charCodeAt(0)
  return n < 0x100 ? `\\x${n.toString(16).padStart(2, '0')}` : `\\u${n.toString(16).padStart(4, '0')}`
}

/**
 * Text fit for a terminal: control characters (an escape sequence in a package name from a
 * hostile index, say) and bidirectional overrides shown as \xNN or \uNNNN instead of acting
 * on the terminal; the newlines that end our own lines kept.
 */
export const printable = (s: string): string => s.replace(CONTROLS, escaped)

/** A name from the stick or an index inside a message: as printable, and its newlines shown too, so it can never start a line of its own. */
export const printableName = (s: string): string => printable(s).replace(/[\n]/g, escaped)

/** Bytes for people: 1.5 GiB. */
export function formatBytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB']
  let v = n
  let u = 0
  while (Math.abs(v) >= 1024 && u < units.length - 1) {
    v /= 1024
    u++
  }
  return u === 0 ? `${v} B` : `${v.toFixed(1)} ${units[u]}`
}

/** A time as people read it in a log: local time with its offset from UTC, to the second (2026-12-06T21:41:05+01:00). */
export function localTime(d: Date): string {
  const two = (n: number) => String(n).padStart(2, '0')
  const off = -d.getTimezoneOffset()
  const zone = `${off >= 0 ? '+' : '-'}${two(Math.floor(Math.abs(off) / 60))}:${two(Math.abs(off) % 60)}`
  return `${d.getFullYear()}-${two(d.getMonth() + 1)}-${two(d.getDate())}T${two(d.getHours())}:${two(d.getMinutes())}:${two(d.getSeconds())}${zone}`
}
