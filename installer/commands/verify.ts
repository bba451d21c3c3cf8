import { mkdtemp } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { printJson, type Io } from '../../bundle/report.js'
import { verifyBundle, verifyNotes } from '../../bundle/verify.js'
import { deltaSummary } from '../../bundle/verify-delta.js'
import { type Flags, recordDir } from '../context.js'
import { verifiedRecord, verifyOptions, writeRecord } from '../gate.js'
import { DryRunHost, NodeHost } from '../host.js'
import { RECORD_DIR } from '../node-paths.js'

/** `./install verify`: the bundle against SHA256SUMS, the lock and (with a key) its signature; a record of it. */
export async function verifyCommand(flags: Flags, io: Io): Promise<void> {
  const v = await verifyBundle(flags.bundle, await verifyOptions(flags))
  for (const line of verifyNotes(v)) io.err(`${line}\n`)
  // As root the record goes to /var/log/kube-airgap; another user's to their own state folder,
  // or, where that cannot be written (no home), to a new private folder under the temp folder.
  const node = new NodeHost(flags.root)
  const host = flags.dryRun ? new DryRunHost(node) : node
  const dir = recordDir(flags)
  const record = await writeRecord(host, verifiedRecord(v), dir).catch(async (e: NodeJS.ErrnoException) => {
    if (dir === RECORD_DIR || !['EACCES', 'ENOENT', 'EROFS', 'ENOTDIR', 'EPERM'].includes(e.code ?? '')) throw e
    const fallback = await mkdtemp(join(tmpdir(), 'kube-airgap-record-'))
    io.err(`note  ${dir} cannot be written (${e.code}): the record goes to ${fallback} instead\n`)
    return writeRecord(host, verifiedRecord(v), fallback)
  })
  const delta = v.delta ? { delta: deltaSummary(v.delta) } : {}
  if (flags.json) return printJson(io, { ok: true, name: v.name, files: v.files, bytes: v.bytes, signedBy: v.signedBy ?? null, record, ...delta })
  io.out(`ok: ${v.name}: ${v.files} files match SHA256SUMS and the lock${v.signedBy ? `; signed by ${v.signedBy}` : ''}; record: ${record}\n`)
}
