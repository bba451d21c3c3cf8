import { readFile } from 'node:fs/promises'
import { Sha256 } from '../bundle/digest.js'
import { KaError } from '../bundle/errors.js'
import { LOCK_FILE } from '../bundle/layout.js'
import { type Bundle, openBundle } from '../bundle/open.js'
import { publicKeyOnly } from '../bundle/signing.js'
import { type VerifyOptions, type VerifyReport, verifyBundle, verifyNotes } from '../bundle/verify.js'
import { deltaSummary, requireWholeDelta } from '../bundle/verify-delta.js'
import type { Flags } from './context.js'
import type { Host } from './host.js'
import { RECORD_DIR } from './node-paths.js'

export async function verifyOptions(flags: Pick<Flags, 'publicKey' | 'requireSignature' | 'base'>): Promise<VerifyOptions> {
  const base = flags.base ? { base: flags.base } : {}
  if (!flags.publicKey) return flags.requireSignature ? { requireSignature: true, ...base } : base
  const pem = await readFile(flags.publicKey, 'utf8').catch(() => {
    throw new KaError('EUSAGE', `--public-key ${flags.publicKey}: cannot read it`)
  })
  return { publicKeyPem: publicKeyOnly(pem, `--public-key ${flags.publicKey}`), keySource: flags.publicKey, requireSignature: true, ...base }
}

/**
 * The gate in front of every command that reads the bundle: verification (and its record),
 * then the bundle opened on what verification saw, so that every file read later is checked
 * against the same hashes. --no-verify skips it with a warning, and the record says so.
 */
export async function openVerified(
  flags: Flags,
  recordOn: Host,
  say: (line: string) => void,
): Promise<{ bundle: Bundle; report?: VerifyReport; record: string }> {
  if (!flags.verify) {
    say('warn  --no-verify: the bundle was NOT verified and its files are used as they are; for development only, never on a real node')
    const record = await writeRecord(recordOn, { result: 'not verified (--no-verify)', bundle: flags.bundle })
    return { bundle: await openBundle(flags.bundle), record }
  }
  const v = await verifyBundle(flags.bundle, await verifyOptions(flags))
  requireWholeDelta(v)
  for (const line of verifyNotes(v)) say(line)
  if (v.signed && !v.signedBy) say('note  the bundle is signed, but the signature was not checked here (no --public-key): check it with kube-airgap-verify')
  const record = await writeRecord(recordOn, verifiedRecord(v))
  return { bundle: await openBundle(flags.bundle, v.digests, v.lock, v.delta), report: v, record }
}

/**
 * What verification found, for a security officer: /var/log/kube-airgap/verify-<time>.json
 * with the bundle's name, its lock's digest, the signing key's fingerprint, every file's
 * hash and the result. Written after the bundle proved itself (a failed verification
 * changes nothing on the node).
 */
export async function writeRecord(host: Host, fields: Record<string, unknown>, dir = RECORD_DIR): Promise<string> {
  const at = new Date()
  const text = `${JSON.stringify({ result: fields.result, time: at.toISOString(), ...fields }, null, 2)}\n`
  const path = `${dir}/verify-${at.toISOString().replace(/[:.]/g, '-')}.json`
  await host.privateDir(dir)
  await host.write(path, text, 0o600, Sha256.of(text))
  return path
}

export const verifiedRecord = (v: VerifyReport): Record<string, unknown> => ({
  result: 'verified',
  bundle: v.name,
  platform: v.lock.platforms[0],
  kubernetes: v.lock.kubernetes,
  lock: v.digests.get(LOCK_FILE)?.oci,
  signedBy: v.signedBy ?? null,
  files: Object.fromEntries([...v.digests].sort(([a], [b]) => (a < b ? -1 : 1)).map(([p, d]) => [p, d.oci])),
  ...(v.joinFiles.length ? { notCovered: v.joinFiles } : {}),
  ...(v.ignored.length ? { ignored: v.ignored } : {}),
  ...(v.delta ? { delta: deltaSummary(v.delta) } : {}),
})
