import { Sha256 } from './digest.js'
import { KaError } from './errors.js'
import { isSafeRelativePath, SUMS_FILE } from './layout.js'

/** One file a delta bundle does not carry: the old bundle holds it at the same path. */
export interface BaseFile {
  path: string
  sha256: Sha256
  /** Known when the builder had the file (the lock does not always give sizes): for reports only. */
  size?: number
}

/** DELTA.json: which bundle the delta completes, and what it takes from it. */
export interface Delta {
  /** The old bundle's folder name (kube-airgap-v1.29.3-linux-amd64), looked for beside the delta. */
  base: string
  /** The old bundle's Kubernetes version. */
  kubernetes: string
  files: BaseFile[]
}

const TYPE = 'kube-airgap-delta/v1'

/** The same delta, the same bytes: one file a line, in path order. */
export function deltaBytes(d: Delta): Buffer {
  const files = [...d.files]
    .sort((a, b) => (a.path < b.path ? -1 : 1))
    .map((f) => `    ${JSON.stringify({ path: f.path, sha256: f.sha256.hex, ...(f.size !== undefined ? { size: f.size } : {}) })}`)
  const head = `{\n  "type": ${JSON.stringify(TYPE)},\n  "base": ${JSON.stringify(d.base)},\n  "kubernetes": ${JSON.stringify(d.kubernetes)},\n`
  return Buffer.from(`${head}  "files": [\n${files.join(',\n')}\n  ]\n}\n`)
}

/**
 * DELTA.json, checked field by field: a path that is not a plain relative path or a file
 * named twice is a damaged (or forged) delta, never an input. The error says only what is
 * wrong: verification reports it as DELTA.json's problem.
 */
export function parseDelta(text: string): Delta {
  const bad = (why: string): never => {
    throw new KaError('EVERIFY', why)
  }
  let doc: Record<string, unknown>
  try {
    doc = JSON.parse(text) as Record<string, unknown>
  } catch {
    return bad('not JSON')
  }
  if (typeof doc !== 'object' || doc === null || doc.type !== TYPE) return bad(`not a ${TYPE} document`)
  const base =
    typeof doc.base === 'string' && /^[A-Za-z0-9][A-Za-z0-9._+-]*$/.test(doc.base) ? doc.base : bad(`base ${JSON.stringify(doc.base)} is not a bundle's name`)
  const kubernetes = typeof doc.kubernetes === 'string' && /^\d+\.\d+\.\d+$/.test(doc.kubernetes) ? doc.kubernetes : bad('kubernetes is not a version')
  if (!Array.isArray(doc.files)) return bad('files is not a list')
  const seen = new Set<string>()
  const files = doc.files.map((f: Record<string, unknown> | null, i): BaseFile => {
    const at = `files[${i}]`
    if (typeof f !== 'object' || f === null) return bad(`${at} is not an object`)
    const path =
      typeof f.path === 'string' && isSafeRelativePath(f.path) && f.path !== SUMS_FILE ? f.path : bad(`${at} names an unsafe path ${JSON.stringify(f.path)}`)
    if (seen.has(path)) bad(`${path} is listed twice`)
    seen.add(path)
    let sha256: Sha256
    try {
      sha256 = Sha256.fromHex(String(f.sha256))
    } catch {
      return bad(`${at} has sha256 ${JSON.stringify(f.sha256)}`)
    }
    if (f.size === undefined) return { path, sha256 }
    const size = typeof f.size === 'number' && Number.isSafeInteger(f.size) && f.size >= 0 ? f.size : bad(`${at} has size ${JSON.stringify(f.size)}`)
    return { path, sha256, size }
  })
  return { base, kubernetes, files }
}
