/**
 * What the user sees while files move: a live table on a terminal, plain lines in a log,
 * nothing at all with --json (the result goes to stdout as one JSON document).
 */
export interface Progress {
  start(id: string, label: string, total?: number): void
  advance(id: string, bytes: number): void
  done(id: string, note: string): void
  note(line: string): void
  close(): void
}

export const silentProgress: Progress = { start() {}, advance() {}, done() {}, note() {}, close() {} }

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

interface Row {
  label: string
  total?: number
  bytes: number
  started: number
  state: 'active' | 'done'
  note: string
}

/** Plain lines: one when an artifact starts moving, one when it is done. For logs and CI. */
export class LineProgress implements Progress {
  private rows = new Map<string, Row>()
  private closed = false
  constructor(private readonly out: (s: string) => void = (s) => process.stderr.write(s)) {}
  private write(s: string): void {
    if (!this.closed) this.out(s)
  }
  start(id: string, label: string, total?: number): void {
    this.rows.set(id, { label, total, bytes: 0, started: Date.now(), state: 'active', note: '' })
  }
  advance(id: string, bytes: number): void {
    const r = this.rows.get(id)
    if (r) r.bytes += bytes
  }
  done(id: string, note: string): void {
    const r = this.rows.get(id)
    if (!r) return
    const secs = (Date.now() - r.started) / 1000
    const rate = r.bytes > 0 && secs > 0.05 ? `, ${formatBytes(r.bytes / secs)}/s` : ''
    this.write(`${note.padEnd(8)} ${r.label}${r.bytes > 0 ? ` (${formatBytes(r.bytes)}${rate})` : ''}\n`)
  }
  note(line: string): void {
    this.write(`${line}\n`)
  }
  close(): void {
    this.closed = true
  }
}

/** A table redrawn in place a few times a second: each artifact's bytes, total and rate. */
export class TtyProgress implements Progress {
  private rows = new Map<string, Row>()
  private closed = false
  private drawn = 0
  private timer: NodeJS.Timeout
  constructor(private readonly stream: NodeJS.WriteStream = process.stderr) {
    this.timer = setInterval(() => this.draw(), 200)
    this.timer.unref()
  }
  start(id: string, label: string, total?: number): void {
    this.rows.set(id, { label, total, bytes: 0, started: Date.now(), state: 'active', note: '' })
  }
  advance(id: string, bytes: number): void {
    const r = this.rows.get(id)
    if (r) r.bytes += bytes
  }
  done(id: string, note: string): void {
    const r = this.rows.get(id)
    if (!r) return
    r.state = 'done'
    r.note = note
    if (this.closed) return
    this.clear()
    this.stream.write(`${note.padEnd(8)} ${r.label}${r.bytes > 0 ? ` (${formatBytes(r.bytes)})` : ''}\n`)
    this.rows.delete(id)
    this.draw()
  }
  note(line: string): void {
    if (this.closed) return
    this.clear()
    this.stream.write(`${line}\n`)
    this.draw()
  }
  close(): void {
    clearInterval(this.timer)
    this.clear()
    this.closed = true
  }
  private clear(): void {
    if (this.closed) return
    if (this.drawn > 0) this.stream.write(`\x1b[${this.drawn}A\x1b[J`)
    this.drawn = 0
  }
  private draw(): void {
    if (this.closed) return
    this.clear()
    const width = this.stream.columns || 100
    const lines = renderRows([...this.rows.values()], Date.now(), width)
    if (lines.length > 0) this.stream.write(lines.join('\n') + '\n')
    this.drawn = lines.length
  }
}

export function renderRows(rows: readonly Row[], now: number, width: number): string[] {
  const active = rows.filter((r) => r.state === 'active')
  return active.map((r) => {
    const secs = Math.max(0.001, (now - r.started) / 1000)
    const pct = r.total ? `${Math.floor((100 * r.bytes) / r.total)}%`.padStart(4) : '    '
    const amount = r.total ? `${formatBytes(r.bytes)} / ${formatBytes(r.total)}` : formatBytes(r.bytes)
    return `${pct} ${r.label}  ${amount}  ${formatBytes(r.bytes / secs)}/s`.slice(0, width - 1)
  })
}

export function progressFor(opts: { json?: boolean; stream?: NodeJS.WriteStream }): Progress {
  const stream = opts.stream ?? process.stderr
  if (opts.json) return silentProgress
  return stream.isTTY ? new TtyProgress(stream) : new LineProgress((s) => stream.write(s))
}
