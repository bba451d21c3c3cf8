import { createHash, createPublicKey, sign, verify, type KeyObject } from 'node:crypto'
import { Sha256 } from './digest.js'
import { KaError } from './errors.js'

/**
 * What a signature binds: the bundle's name, its SHA256SUMS and its lock; the Kubernetes
 * version and platform are there for people (the standalone verifier prints them).
 */
export interface Statement {
  type: 'kube-airgap-bundle/v1'
  bundle: string
  kubernetes: string
  platform: string
  sha256sums: string
  lock: string
}

/**
 * The statement's exact bytes: fixed key order, one key a line, so the signed bytes are the
 * file's bytes and the standalone verifier can read a field with sed.
 */
export function statementBytes(s: Omit<Statement, 'type'>): Buffer {
  const ordered = { type: 'kube-airgap-bundle/v1', bundle: s.bundle, kubernetes: s.kubernetes, platform: s.platform, sha256sums: s.sha256sums, lock: s.lock }
  return Buffer.from(`${JSON.stringify(ordered, null, 2)}\n`)
}

export function signStatement(statement: Buffer, privateKeyPem: string): Buffer {
  return sign(null, statement, privateKeyPem)
}

function publicKey(pem: string, source: string): KeyObject {
  try {
    const k = createPublicKey(pem)
    if (k.asymmetricKeyType !== 'ed25519') throw new Error(k.asymmetricKeyType)
    return k
  } catch {
    throw new KaError('EUSAGE', `${source}: not an Ed25519 public key in PEM form (make one with \`bundle keygen\`)`)
  }
}

/**
 * The public key PEM from a file the user gave, refusing one that holds a private key:
 * deriving the public half would invite operators to copy signing keys onto nodes.
 */
export function publicKeyOnly(pem: string, source: string): string {
  if (/-----BEGIN [A-Z ]*PRIVATE KEY-----/.test(pem)) {
    throw new KaError('EUSAGE', `${source} holds a private key; give the public key (kube-airgap.pub) and keep the private key on the build machine only`)
  }
  publicKey(pem, source)
  return pem
}

/** sha256 of the key's SubjectPublicKeyInfo: what a security officer compares. */
export function keyFingerprint(pem: string, source = 'public key'): string {
  return `sha256:${createHash('sha256')
    .update(publicKey(pem, source).export({ type: 'spki', format: 'der' }))
    .digest('hex')}`
}

/**
 * Checks a signed statement against the bundle's own SHA256SUMS and lock bytes. Any mismatch
 * (another key, a changed byte, a swapped lock) is ESIGNATURE, exit 1.
 */
export function checkSignature(o: {
  statement?: Buffer
  signature?: Buffer
  sums: Buffer
  lock: Buffer
  publicKeyPem: string
  keySource: string
  name: string
}): void {
  function bad(why: string): never {
    throw new KaError('ESIGNATURE', `${o.name}: ${why}; do not install it: get the bundle (and its key) again from who built it`)
  }
  if (!o.statement || !o.signature) bad('the bundle is not signed')
  if (!verify(null, o.statement!, publicKey(o.publicKeyPem, o.keySource), o.signature!))
    bad(`the signature does not match ${o.keySource} (key ${keyFingerprint(o.publicKeyPem)})`)
  let s: Statement
  try {
    s = JSON.parse(o.statement!.toString('utf8')) as Statement
  } catch {
    bad('the signed statement is not JSON')
  }
  if (s.bundle !== o.name) bad(`the signed statement is for ${JSON.stringify(s.bundle)}, not for this bundle`)
  if (s.sha256sums !== Sha256.of(o.sums).oci) bad('SHA256SUMS is not the one that was signed')
  if (s.lock !== Sha256.of(o.lock).oci) bad('bundle.lock.json is not the one that was signed')
}
