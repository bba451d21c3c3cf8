import { terminal } from '../bundle/report.js'
import { formatBytes } from '../bundle/text.js'
/**
 * What the user sees while files move: a live table on a terminal, plain lines in a log,
 * nothing at all with --json (the result goes to stdout as one JSON document).
 */
export interface Progress {
  /**
   * More the run will fetch (added to what it expects already): items, bytes, and how many of
   * the items have no size in advance. Items of a group (an image's blobs) count as one, done
   * when its last one is: `groups` says how many of the items each group has.
   */
  expect(items: number, bytes: number, unsized?: number, groups?: ReadonlyMap<string, number>): void
  /** An item whose size was not known in advance learnt it (its Content-Length arrived). */
  sized(id: string, total: number): void
  /** `group`: rows of one group (an image's blobs) are shown as one row. */
  start(id: string, label: string, total?: number, group?: string): void
  advance(id: string, bytes: number): void
  done(id: string, note: string): void
  note(line: string): void
  close(): void
}

export const silentProgress: Progress = { expect() {}, sized() {}, start() {}, advance() {}, done() {}, note() {}, close() {} }

interface Row {
  label: string
  total?: number
  bytes: number
  started: number
  group?: string
}

/** The run as a whole: items and bytes expected and done, since when. */
export interface Totals {
  items: number
  bytes: number
  /** Items whose size is not known in advance (a lock without sizes): no byte total, no ETA then. */
  unsized?: number
  doneItems: number
  doneBytes: number
  started: number
}

/** The rows both printers keep: one per artifact moving now. */
abstract class Rows implements Progress {
  protected rows = new Map<string, Row>()
  protected closed = false
  protected totals: Totals = { items: 0, bytes: 0, doneItems: 0, doneBytes: 0, started: Date.now() }
  /** How many items of each group are still to come; sizes learnt before an item's row was shown. */
  private groupsLeft = new Map<string, number>()
  private learnt = new Map<string, number>()
  private sizedOnce = new Set<string>()
  expect(items: number, bytes: number, unsized = 0, groups: ReadonlyMap<string, number> = new Map()): void {
    const t = this.totals
    let grouped = 0
    for (const [g, n] of groups) {
      grouped += n
      this.groupsLeft.set(g, (this.groupsLeft.get(g) ?? 0) + n)
    }
    this.totals = { ...t, items: t.items + items - grouped + groups.size, bytes: t.bytes + bytes, unsized: (t.unsized ?? 0) + unsized }
  }
  sized(id: string, total: number): void {
    // Once per item: a transfer that starts over learns its size again.
    if (this.sizedOnce.has(id)) return
    this.sizedOnce.add(id)
    const t = this.totals
    this.totals = { ...t, bytes: t.bytes + total, unsized: Math.max(0, (t.unsized ?? 0) - 1) }
    const r = this.rows.get(id)
    if (r) r.total = total
    else this.learnt.set(id, total)
  }
  start(id: string, label: string, total?: number, group?: string): void {
    const known = total ?? this.learnt.get(id)
    this.learnt.delete(id)
    this.rows.set(id, { label, total: known, bytes: 0, started: Date.now(), ...(group ? { group } : {}) })
  }
  advance(id: string, bytes: number): void {
    const r = this.rows.get(id)
    if (r) r.bytes += bytes
    this.totals.doneBytes += bytes
  }
  done(id: string, note: string): void {
    const r = this.rows.get(id)
    this.rows.delete(id)
    // A group (an image) is done with its last item.
    const left = r?.group === undefined ? 0 : (this.groupsLeft.get(r.group) ?? 1) - 1
    if (r?.group !== undefined) this.groupsLeft.set(r.group, left)
    if (r && left <= 0) this.totals.doneItems++
    const count = this.totals.items ? ` (${this.totals.doneItems}/${this.totals.items})` : ''
    if (r && !this.closed) this.finished(`${note.padEnd(8)} ${r.label}${r.bytes > 0 ? ` (${formatBytes(r.bytes)}${rate(r, Date.now())})` : ''}${count}`)
  }
  note(line: string): void {
    if (!this.closed) this.finished(line)
  }
  close(): void {
    this.closed = true
  }
  /** Prints a line that stays. */
  protected abstract finished(line: string): void
}

const rate = (r: Row, now: number): string => {
  const secs = (now - r.started) / 1000
  return r.bytes > 0 && secs > 0.05 ? `, ${formatBytes(r.bytes / secs)}/s` : ''
}

/** Plain lines: one when an artifact is done. For logs and CI. */
export class LineProgress extends Rows {
  constructor(private readonly out: (s: string) => void = terminal(process.stderr)) {
    super()
  }
  protected finished(line: string): void {
    this.out(`${line}\n`)
  }
}

/** A table redrawn in place a few times a second: each artifact's bytes, total and rate. */
export class TtyProgress extends Rows {
  private drawn = 0
  private timer: NodeJS.Timeout
  /** Text from the lock (labels) goes through here: escaped, coloured; only the table's own cursor codes go raw. */
  private readonly text: (s: string) => void
  constructor(private readonly stream: NodeJS.WriteStream = process.stderr) {
    super()
    this.text = terminal(stream)
    this.timer = setInterval(() => this.draw(), 200)
    this.timer.unref()
  }
  protected finished(line: string): void {
    this.clear()
    this.text(`${line}\n`)
    this.draw()
  }
  override close(): void {
    clearInterval(this.timer)
    this.clear()
    super.close()
  }
  private clear(): void {
    if (this.closed) return
    if (this.drawn > 0) this.stream.write(`\x1b[${this.drawn}A\x1b[J`)
    this.drawn = 0
  }
  private draw(): void {
    if (this.closed) return
    this.clear()
    const lines = renderRows([...this.rows.values()], Date.now(), this.stream.columns || 100, this.totals)
    if (lines.length > 0) this.text(`${lines.join('\n')}\n`)
    this.drawn = lines.length
  }
}

/**
 * The live table: a total line (bytes and items done of all, elapsed, ETA at the rate so
 * far), then one row per download, the blobs of one image merged into one row.
 */
export function renderRows(rows: readonly Row[], now: number, width: number, totals?: Totals): string[] {
  const merged = new Map<string, Row & { n: number }>()
  for (const r of rows) {
    const key = r.group ?? `\0${r.label}`
    const m = merged.get(key)
    if (!m) merged.set(key, { ...r, label: r.group ?? r.label, n: 1 })
    else {
      m.bytes += r.bytes
      m.total = m.total !== undefined && r.total !== undefined ? m.total + r.total : undefined
      m.started = Math.min(m.started, r.started)
      m.n++
    }
  }
  const lines = [...merged.values()].map((r) => {
    const secs = Math.max(0.001, (now - r.started) / 1000)
    const pct = r.total ? `${Math.floor((100 * r.bytes) / r.total)}%`.padStart(4) : '    '
    const amount = r.total ? `${formatBytes(r.bytes)} / ${formatBytes(r.total)}` : formatBytes(r.bytes)
    const blobs = r.group ? `  (${r.n} blob${r.n > 1 ? 's' : ''})` : ''
    return `${pct} ${r.label}${blobs}  ${amount}  ${formatBytes(r.bytes / secs)}/s`.slice(0, width - 1)
  })
  if (!totals?.items) return lines
  const secs = Math.max(0.001, (now - totals.started) / 1000)
  const left = totals.bytes - totals.doneBytes
  const sized = !totals.unsized
  const eta = sized && totals.doneBytes > 0 && left > 0 ? `, ETA ${Math.ceil(left / (totals.doneBytes / secs))} s` : ''
  const amount = sized
    ? `${formatBytes(totals.doneBytes)} / ${formatBytes(totals.bytes)}`
    : `${formatBytes(totals.doneBytes)} (${totals.unsized} of unknown size)`
  const total = `total ${amount}, ${totals.doneItems}/${totals.items} files and images, ${Math.floor(secs)} s, ${formatBytes(totals.doneBytes / secs)}/s${eta}`
  return [total.slice(0, width - 1), ...lines]
}

export function progressFor(opts: { json?: boolean; stream?: NodeJS.WriteStream }): Progress {
  const stream = opts.stream ?? process.stderr
  if (opts.json) return silentProgress
  return stream.isTTY ? new TtyProgress(stream) : new LineProgress(terminal(stream))
}
