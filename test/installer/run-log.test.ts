import { mkdir, mkdtemp, readdir, readFile, rm, stat, symlink, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { Sha256 } from '../../bundle/digest.js'
import { writeRecord } from '../../installer/gate.js'
import { NodeHost, RunLog } from '../../installer/host.js'

/** The run log and the verification record hold join tokens and file lists: only root reads them, and they are never written through a link. */
let dir: string
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'ka-log-'))
})
afterAll(() => rm(dir, { recursive: true, force: true }))

describe('the run log', () => {
  it('is a new file at 0600 in a 0700 folder, with kubeadm join tokens and the certificate key redacted', async () => {
    const path = join(dir, 'a', 'var/log/kube-airgap', 'install-1.log')
    const log = new RunLog(path)
    const token = 'abcdef.0123456789abcdef'
    const key = 'f'.repeat(64)
    log.line(`kubeadm join 10.0.0.1:6443 --token ${token} --discovery-token-ca-cert-hash sha256:${'a'.repeat(64)} --control-plane --certificate-key ${key}`)
    log.line(`  | [upload-certs] Using certificate key:\n  | ${key}`)
    log.close()
    const text = await readFile(path, 'utf8')
    expect(text).not.toContain(token)
    expect(text).not.toContain(key)
    expect(text).toContain('--token <token>')
    expect(text).toContain(`sha256:${'a'.repeat(64)}`)
    expect((await stat(path)).mode & 0o777).toBe(0o600)
    expect((await stat(join(dir, 'a', 'var/log/kube-airgap'))).mode & 0o777).toBe(0o700)
  })

  it('a planted log file, a link at its name or a linked folder is refused, and nothing is written there', async () => {
    const logs = join(dir, 'b', 'var/log/kube-airgap')
    await mkdir(logs, { recursive: true })
    await writeFile(join(logs, 'install-1.log'), 'planted\n', { mode: 0o644 })
    expect(() => new RunLog(join(logs, 'install-1.log'))).toThrow(/cannot create the run log \(EEXIST\)/)
    expect(await readFile(join(logs, 'install-1.log'), 'utf8')).toBe('planted\n')
    await symlink('/etc/passwd-not-here', join(logs, 'install-2.log'))
    expect(() => new RunLog(join(logs, 'install-2.log'))).toThrow(/cannot create the run log/)
    const elsewhere = join(dir, 'elsewhere')
    await mkdir(elsewhere)
    await mkdir(join(dir, 'c', 'var/log'), { recursive: true })
    await symlink(elsewhere, join(dir, 'c', 'var/log/kube-airgap'))
    expect(() => new RunLog(join(dir, 'c', 'var/log/kube-airgap', 'install-1.log'))).toThrow(
      /is a symbolic link: logs and records are never written through a link/,
    )
    await expect(writeRecord(new NodeHost(join(dir, 'c')), { result: 'verified' })).rejects.toThrow(/is a symbolic link/)
    expect(await readdir(elsewhere)).toEqual([])
  })

  it('the verification record is 0600', async () => {
    const root = join(dir, 'd')
    const path = await writeRecord(new NodeHost(root), { result: 'verified' })
    expect((await stat(join(root, path))).mode & 0o777).toBe(0o600)
    expect(Sha256.of(await readFile(join(root, path))).hex).toMatch(/^[0-9a-f]{64}$/)
  })
})
