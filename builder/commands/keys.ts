import { generateKeyPairSync } from 'node:crypto'
import { existsSync } from 'node:fs'
import { mkdir, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { writeAtomic } from '../../bundle/atomic.js'
import { KaError } from '../../bundle/errors.js'
import type { Io } from '../../bundle/report.js'
import { keyFingerprint, publicKeyOnly } from '../../bundle/signing.js'
import { VERIFIER_NAME, verifierScript } from '../pack/verifier.js'
import { readKey } from './common.js'

/** `bundle keygen --out DIR`: the key pair and the standalone verifier with the public key in it; a key is never overwritten. */
export async function keygenCommand(opts: { out: string }, io: Io): Promise<void> {
  const out = (s: string) => io.out(s)
  await mkdir(opts.out, { recursive: true })
  const key = join(opts.out, 'kube-airgap.key')
  if (existsSync(key)) throw new KaError('EUSAGE', `${key} exists already; move it away first (a key is never overwritten)`)
  const { privateKey, publicKey } = generateKeyPairSync('ed25519')
  const pub = publicKey.export({ type: 'spki', format: 'pem' }).toString()
  await writeFile(key, privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(), { mode: 0o600, flag: 'wx' })
  await writeAtomic(join(opts.out, 'kube-airgap.pub'), pub, { mode: 0o644 })
  await writeAtomic(join(opts.out, VERIFIER_NAME), verifierScript(pub), { mode: 0o755 })
  out(
    `${key}\n${join(opts.out, 'kube-airgap.pub')} (${keyFingerprint(pub)})\n${join(opts.out, VERIFIER_NAME)}: carry it to the air-gapped side by your own channel, never on the bundle's stick\n`,
  )
}

/** `bundle verifier --public-key FILE`: the standalone verifier for an existing key. */
export async function verifierCommand(opts: { publicKey: string; out: string }, io: Io): Promise<void> {
  const out = (s: string) => io.out(s)
  const pem = await readKey(opts.publicKey)
  await writeAtomic(opts.out, verifierScript(publicKeyOnly(pem, `--public-key ${opts.publicKey}`)), { mode: 0o755 })
  out(`${opts.out} (key ${keyFingerprint(pem)})\n`)
}
