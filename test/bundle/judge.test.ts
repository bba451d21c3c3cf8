import { describe, expect, it } from 'vitest'
import { deltaBytes, parseDelta } from '../../bundle/delta.js'
import { Sha256 } from '../../bundle/digest.js'
import type { KaError } from '../../bundle/errors.js'
import { DELTA_FILE, LOCK_FILE, SUMS_FILE } from '../../bundle/layout.js'
import { newScan, type Scan } from '../../bundle/scan.js'
import { formatSums } from '../../bundle/sums.js'
import { judge } from '../../bundle/verify.js'
import type { BaseScan } from '../../bundle/verify-delta.js'

/**
 * The gate on hand-made scans: what a scan of a folder or tar hands the judge, with no disk
 * in between. Each case is one way a stick can differ from what was built.
 */
const LOCK = Buffer.from(JSON.stringify({ lockVersion: 1, kubernetes: '1.29.3', platforms: ['linux/amd64'], files: [], images: [], packages: [] }))
const FILES: Record<string, Buffer> = { install: Buffer.from('#!/bin/sh\n'), 'files/kubeadm': Buffer.from('kubeadm bytes') }

/** A bundle scan as built: every file hashed, SHA256SUMS listing them all and the lock. */
function builtScan(files: Record<string, Buffer> = FILES, extraSums: Map<string, Sha256> = new Map()): Scan {
  const scan = newScan('kube-airgap-v1.29.3-linux-amd64', true)
  const sums = new Map<string, Sha256>([[LOCK_FILE, Sha256.of(LOCK)], ...extraSums])
  for (const [p, bytes] of Object.entries(files)) sums.set(p, Sha256.of(bytes))
  const sumsText = Buffer.from(formatSums(sums))
  for (const [p, bytes] of [...Object.entries(files), [LOCK_FILE, LOCK] as const, [SUMS_FILE, sumsText] as const]) {
    scan.digests.set(p, Sha256.of(bytes))
    scan.bytes += bytes.length
  }
  scan.small.set(LOCK_FILE, LOCK)
  scan.small.set(SUMS_FILE, sumsText)
  return scan
}

const problems = (f: () => unknown): { path: string; problem: string }[] => {
  try {
    f()
  } catch (e) {
    return ((e as KaError).facts?.problems as { path: string; problem: string }[]) ?? [{ path: '(thrown)', problem: (e as Error).message }]
  }
  return []
}

describe('judge', () => {
  it('passes a scan that matches its SHA256SUMS and lock, and reports it', () => {
    const report = judge(builtScan(), 'b')
    expect(report.lock.kubernetes).toBe('1.29.3')
    expect(report.files).toBe(4)
    expect(report.signed).toBe(false)
  })

  it('names a changed file with both digests, a missing one, and a file SHA256SUMS does not list', () => {
    const scan = builtScan()
    scan.digests.set('files/kubeadm', Sha256.of('other bytes'))
    scan.digests.delete('install')
    scan.digests.set('files/extra', Sha256.of('x'))
    expect(problems(() => judge(scan, 'b'))).toEqual([
      { path: 'files/kubeadm', problem: `changed: expected sha256 ${Sha256.of(FILES['files/kubeadm']!).hex}, found ${Sha256.of('other bytes').hex}` },
      { path: 'install', problem: 'missing' },
      { path: 'files/extra', problem: `not listed in ${SUMS_FILE}` },
    ])
  })

  it("sets a folder's own top-level files aside as the operator's, but not in a tar or below the top", () => {
    const folder = builtScan()
    folder.digests.set('notes.txt', Sha256.of('mine'))
    expect(judge(folder, 'b').ignored).toEqual(['notes.txt'])
    const tar = builtScan()
    tar.folder = false
    tar.digests.set('notes.txt', Sha256.of('mine'))
    expect(problems(() => judge(tar, 'b'))).toEqual([{ path: 'notes.txt', problem: `not listed in ${SUMS_FILE}` }])
  })

  it('fails without SHA256SUMS or with an unreadable lock, and a damaged scan carries its own problems through', () => {
    const noSums = builtScan()
    noSums.small.delete(SUMS_FILE)
    expect(problems(() => judge(noSums, 'b'))[0]).toEqual({ path: SUMS_FILE, problem: 'missing' })
    const badLock = builtScan()
    badLock.small.set(LOCK_FILE, Buffer.from('{'))
    expect(problems(() => judge(badLock, 'b'))[0]?.path).toBe(LOCK_FILE)
    const damaged = builtScan()
    damaged.problems.push({ path: 'files/../x', problem: 'an unsafe name' })
    expect(problems(() => judge(damaged, 'b'))).toEqual([{ path: 'files/../x', problem: 'an unsafe name' }])
  })

  it('requires a signature when told to, before anything is trusted', () => {
    expect(problems(() => judge(builtScan(), 'b', { requireSignature: true }))[0]?.problem).toMatch(/not signed; do not install it unsigned/)
  })

  describe('a delta', () => {
    const old = Buffer.from('kubelet of the old bundle')
    const delta = deltaBytes({
      base: 'kube-airgap-v1.29.3-linux-amd64',
      kubernetes: '1.29.3',
      files: [{ path: 'files/kubelet', sha256: Sha256.of(old), size: old.length }],
    })
    const deltaScan = () => {
      const scan = builtScan({ ...FILES, [DELTA_FILE]: delta })
      scan.small.set(DELTA_FILE, delta)
      return scan
    }
    const base = (found: Buffer | undefined): BaseScan => ({
      delta: parseDelta(delta.toString()),
      dir: '/media/old',
      found: new Map(found ? [['files/kubelet', { digest: Sha256.of(found), size: found.length }]] : []),
    })

    it('takes a file DELTA.json pins from the old bundle when found there with its digest', () => {
      const report = judge(deltaScan(), 'b', {}, base(old))
      expect(report.delta).toMatchObject({ base: 'kube-airgap-v1.29.3-linux-amd64', dir: '/media/old', missing: [] })
      expect(report.digests.get('files/kubelet')?.equals(Sha256.of(old))).toBe(true)
    })

    it('reports a file not found in the old bundle as missing (verify passes; install refuses), and a changed one as a problem', () => {
      expect(judge(deltaScan(), 'b', {}, base(undefined)).delta?.missing.map((f) => f.path)).toEqual(['files/kubelet'])
      expect(problems(() => judge(deltaScan(), 'b', {}, base(Buffer.from('changed'))))).toEqual([
        {
          path: '/media/old/files/kubelet',
          problem: `changed in the old bundle: ${DELTA_FILE} pins sha256 ${Sha256.of(old).hex}, found ${Sha256.of('changed').hex}`,
        },
      ])
    })

    it('refuses a file both SHA256SUMS and DELTA.json claim', () => {
      const both = deltaBytes({ base: 'old', kubernetes: '1.29.3', files: [{ path: 'install', sha256: Sha256.of('x') }] })
      const scan = builtScan({ ...FILES, [DELTA_FILE]: both })
      scan.small.set(DELTA_FILE, both)
      expect(problems(() => judge(scan, 'b'))).toEqual([{ path: 'install', problem: `listed in both ${SUMS_FILE} and ${DELTA_FILE}` }])
    })
  })
})

describe('parseDelta', () => {
  const doc = (over: Record<string, unknown>) =>
    JSON.stringify({ type: 'kube-airgap-delta/v1', base: 'old-bundle', kubernetes: '1.29.3', files: [{ path: 'files/a', sha256: 'a'.repeat(64) }], ...over })
  const why = (text: string) => {
    try {
      parseDelta(text)
      return 'accepted'
    } catch (e) {
      return (e as Error).message
    }
  }

  it('reads a good one, sizes optional', () => {
    expect(parseDelta(doc({})).files).toEqual([{ path: 'files/a', sha256: Sha256.fromHex('a'.repeat(64)) }])
  })

  it('names the one bad field', () => {
    expect(why('{')).toBe('not JSON')
    expect(why(doc({ type: 'other' }))).toBe('not a kube-airgap-delta/v1 document')
    expect(why(doc({ base: '../up' }))).toBe('base "../up" is not a bundle\'s name')
    expect(why(doc({ kubernetes: 'latest' }))).toBe('kubernetes is not a version')
    expect(why(doc({ files: {} }))).toBe('files is not a list')
    expect(why(doc({ files: [null] }))).toBe('files[0] is not an object')
    expect(why(doc({ files: [{ path: '/etc/passwd', sha256: 'a'.repeat(64) }] }))).toBe('files[0] names an unsafe path "/etc/passwd"')
    expect(why(doc({ files: [{ path: SUMS_FILE, sha256: 'a'.repeat(64) }] }))).toBe(`files[0] names an unsafe path "${SUMS_FILE}"`)
    expect(why(doc({ files: [{ path: 'files/a', sha256: 'xyz' }] }))).toBe('files[0] has sha256 "xyz"')
    expect(why(doc({ files: [{ path: 'files/a', sha256: 'a'.repeat(64), size: -1 }] }))).toBe('files[0] has size -1')
    const twice = { path: 'files/a', sha256: 'a'.repeat(64) }
    expect(why(doc({ files: [twice, twice] }))).toBe('files/a is listed twice')
  })
})
