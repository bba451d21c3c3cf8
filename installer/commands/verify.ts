import { printJson, type Io } from '../../bundle/report.js'
import { verifyBundle, verifyNotes } from '../../bundle/verify.js'
import { deltaSummary } from '../../bundle/verify-delta.js'
import { type Flags, recordDir } from '../context.js'
import { verifiedRecord, verifyOptions, writeRecord } from '../gate.js'
import { DryRunHost, NodeHost } from '../host.js'

/** `./install verify`: the bundle against SHA256SUMS, the lock and (with a key) its signature; a record of it. */
export async function verifyCommand(flags: Flags, io: Io): Promise<void> {
  const v = await verifyBundle(flags.bundle, await verifyOptions(flags))
  for (const line of verifyNotes(v)) io.err(`${line}\n`)
  // As root the record goes to /var/log/kube-airgap; another user's to their own state folder.
  const node = new NodeHost(flags.root)
  const record = await writeRecord(flags.dryRun ? new DryRunHost(node) : node, verifiedRecord(v), recordDir(flags))
  const delta = v.delta ? { delta: deltaSummary(v.delta) } : {}
  if (flags.json) return printJson(io, { ok: true, name: v.name, files: v.files, bytes: v.bytes, signedBy: v.signedBy ?? null, record, ...delta })
  io.out(`ok: ${v.name}: ${v.files} files match SHA256SUMS and the lock${v.signedBy ? `; signed by ${v.signedBy}` : ''}; record: ${record}\n`)
}
