import { readFile, writeFile } from 'node:fs/promises'

/**
 * Forging tars as someone with write access to the stick would: members of every type tar
 * knows, appended after a signed bundle's own, and headers of existing members rewritten
 * (mode, owner) with a valid checksum. Written here by hand, byte by byte, because no tar
 * writer (ours refuses, node-tar normalises) makes the odd members an attacker makes.
 * The layout is POSIX ustar (pax extended headers 'x') and GNU's long-name record 'L'.
 */
export type MemberType = 'file' | 'hardlink' | 'symlink' | 'char' | 'block' | 'fifo' | 'dir'
const TYPEFLAG: Record<MemberType, string> = { file: '0', hardlink: '1', symlink: '2', char: '3', block: '4', fifo: '6', dir: '5' }

export interface Member {
  path: string
  type: MemberType
  data?: Buffer | string
  link?: string
  mode?: number
  uid?: number
  /** How the name is carried when it does not fit: a pax 'x' record, or GNU's 'L' record. */
  longName?: 'pax' | 'gnu'
}

const BLOCK = 512
const octal = (n: number, width: number) => `${n.toString(8).padStart(width - 1, '0')}\0`

function header(name: string, type: string, size: number, opts: { mode: number; uid: number; link?: string }): Buffer {
  const h = Buffer.alloc(BLOCK)
  h.write(name.slice(0, 100), 0, 'utf8')
  h.write(octal(opts.mode, 8), 100)
  h.write(octal(opts.uid, 8), 108)
  h.write(octal(0, 8), 116)
  h.write(octal(size, 12), 124)
  h.write(octal(946684800, 12), 136)
  h.write(type, 156)
  h.write((opts.link ?? '').slice(0, 100), 157, 'utf8')
  h.write('ustar\u000000', 257, 'binary')
  return checksum(h)
}

function checksum(h: Buffer): Buffer {
  h.fill(' ', 148, 156)
  let sum = 0
  for (const b of h) sum += b
  h.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148, 'binary')
  return h
}

const padded = (data: Buffer) => Buffer.concat([data, Buffer.alloc((BLOCK - (data.length % BLOCK)) % BLOCK)])

function paxRecord(key: string, value: string): Buffer {
  const body = ` ${key}=${value}\n`
  let len = body.length + 1
  while (`${len}${body}`.length !== len) len++
  return Buffer.from(`${len}${body}`)
}

function encode(m: Member): Buffer {
  const data = Buffer.from(m.data ?? '')
  const opts = { mode: m.mode ?? (m.type === 'dir' ? 0o755 : 0o644), uid: m.uid ?? 0, link: m.link }
  const out: Buffer[] = []
  let name = m.path
  if (m.longName === 'pax') {
    const rec = paxRecord('path', m.path)
    out.push(header('PaxHeaders/x', 'x', rec.length, { mode: 0o644, uid: 0 }), padded(rec))
    name = 'short-name-the-pax-record-overrides'
  } else if (m.longName === 'gnu') {
    const rec = Buffer.from(`${m.path}\0`)
    out.push(header('././@LongLink', 'L', rec.length, { mode: 0o644, uid: 0 }), padded(rec))
    name = m.path.slice(0, 100)
  }
  const size = m.type === 'file' ? data.length : 0
  out.push(header(name, TYPEFLAG[m.type], size, opts))
  if (size) out.push(padded(data))
  return Buffer.concat(out)
}

/** The offset of the end-of-archive marker (two zero blocks) after the last member. */
function endOf(tar: Buffer): number {
  let at = 0
  while (at + BLOCK <= tar.length) {
    const h = tar.subarray(at, at + BLOCK)
    if (h.every((b) => b === 0)) return at
    const size = Number.parseInt(h.toString('binary', 124, 136).replace(/\0.*$/, '').trim() || '0', 8)
    at += BLOCK + Math.ceil(size / BLOCK) * BLOCK
  }
  throw new Error('no end-of-archive marker')
}

/** Appends members after the last one, as `tar -r` would, keeping the end marker. */
export async function appendMembers(tarPath: string, members: Member[], out = tarPath): Promise<void> {
  const tar = await readFile(tarPath)
  const end = endOf(tar)
  await writeFile(out, Buffer.concat([tar.subarray(0, end), ...members.map(encode), Buffer.alloc(BLOCK * 2)]))
}

/** Rewrites the header of the member named `path` (mode, owner), its checksum made valid again. */
export async function patchMember(tarPath: string, path: string, change: { mode?: number; uid?: number }, out = tarPath): Promise<void> {
  const tar = await readFile(tarPath)
  let at = 0
  while (at + BLOCK <= tar.length) {
    const h = tar.subarray(at, at + BLOCK)
    if (h.every((b) => b === 0)) break
    const name = h.toString('utf8', 0, 100).replace(/\0.*$/, '')
    const prefix = h.toString('utf8', 345, 500).replace(/\0.*$/, '')
    const full = prefix ? `${prefix}/${name}` : name
    if (full === path || full === `${path}/`) {
      if (change.mode !== undefined) h.write(octal(change.mode, 8), 100)
      if (change.uid !== undefined) h.write(octal(change.uid, 8), 108)
      checksum(h)
      await writeFile(out, tar)
      return
    }
    const size = Number.parseInt(h.toString('binary', 124, 136).replace(/\0.*$/, '').trim() || '0', 8)
    at += BLOCK + Math.ceil(size / BLOCK) * BLOCK
  }
  throw new Error(`${path}: no such member`)
}
