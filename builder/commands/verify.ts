import { existsSync } from 'node:fs'
import { type Io, printJson as writeJson } from '../../bundle/report.js'
import { publicKeyOnly } from '../../bundle/signing.js'
import { formatBytes } from '../../bundle/text.js'
import { type VerifyReport, verifyBundle, verifyNotes, verifyTarStream } from '../../bundle/verify.js'
import { deltaSummary } from '../../bundle/verify-delta.js'
import { checkParts, concatParts, partsFileFor } from '../pack/parts.js'
import { VERIFIER_NAME } from '../pack/verifier.js'
import { partsError, readKey } from './common.js'

/** `bundle verify PATH`: a tar, its split parts or an unpacked folder, against SHA256SUMS, the lock and the signature. */
export async function verifyCommand(path: string, opts: { publicKey?: string; requireSignature?: boolean; json?: boolean }, io: Io): Promise<void> {
  const out = (s: string) => io.out(s)
  const err = (s: string) => io.err(s)
  const printJson = (value: unknown) => writeJson(io, value)
  const vopts = {
    ...(opts.publicKey ? { publicKeyPem: publicKeyOnly(await readKey(opts.publicKey), `--public-key ${opts.publicKey}`), keySource: opts.publicKey } : {}),
    ...(opts.requireSignature ? { requireSignature: true } : {}),
  }
  const partsFile = partsFileFor(path)
  let report: VerifyReport
  if (partsFile && (path.endsWith('.parts.sha256') || /\.tar\.\d{3}$/.test(path) || (!existsSync(path) && existsSync(partsFile)))) {
    const check = await checkParts(partsFile)
    if (check.problems.length) throw partsError(check)
    report = await verifyTarStream(() => concatParts(check.parts), check.tarName, vopts)
  } else report = await verifyBundle(path, vopts)
  for (const line of verifyNotes(report)) err(`${line}\n`)
  const signature = report.signedBy ?? (report.signed ? 'present, not checked (no --public-key)' : 'none')
  if (opts.json)
    printJson({
      ok: true,
      name: report.name,
      platform: report.lock.platforms[0],
      files: report.files,
      bytes: report.bytes,
      signedBy: report.signedBy ?? null,
      signature,
      ...(report.delta ? { delta: deltaSummary(report.delta) } : {}),
    })
  else {
    out(
      `ok: ${report.name}: ${report.files} files, ${formatBytes(report.bytes)}, all match SHA256SUMS and the lock${report.signedBy ? `; signed by ${report.signedBy}` : ''}\n`,
    )
    if (!report.signedBy && report.signed)
      out(`note: the bundle is signed, but the signature was not checked: give --public-key FILE (or use ${VERIFIER_NAME})\n`)
  }
}
