import { createRequire } from 'node:module'
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { describe, expect, it } from 'vitest'
import { pickChecksum } from '../../builder/lock/components.js'
import { applyMirrors, createDispatcher, httpDefaults, parseMirror, redactUrl, request, undici, withRetries } from '../../builder/download/http.js'
import { renderRows, type Totals, LineProgress } from '../../builder/progress.js'

describe('mirrors', () => {
  it('rewrites by the longest matching prefix, on a path boundary', () => {
    const m = ['https://github.com=http://127.0.0.1:1/gh', 'https://github.com/containerd=http://127.0.0.1:2/ctd'].map(parseMirror)
    expect(applyMirrors('https://github.com/runc/x', m)).toBe('http://127.0.0.1:1/gh/runc/x')
    expect(applyMirrors('https://github.com/containerd/x', m)).toBe('http://127.0.0.1:2/ctd/x')
    expect(applyMirrors('https://github.community/x', m)).toBe('https://github.community/x')
  })
  it('refuses a spec that is not FROM=TO with URLs', () => {
    expect(() => parseMirror('github.com=mirror')).toThrow(/expected FROM=TO/)
    expect(() => parseMirror('https://a.example')).toThrow(/expected FROM=TO/)
  })
  it('never shows credentials or query strings', () => {
    expect(redactUrl('https://u:p@h.example/a/b?token=x#f')).toBe('https://REDACTED@h.example/a/b?REDACTED')
  })
})

describe('undici, in parts', () => {
  it("loads the very objects undici's index exports (a new undici that moved them fails here), and asks as its request does", async () => {
    const index = createRequire(import.meta.url)('undici') as typeof import('undici')
    const parts = undici()
    expect(parts.EnvHttpProxyAgent).toBe(index.EnvHttpProxyAgent)
    expect(parts.redirect).toBe(index.interceptors.redirect)
    expect(parts.request).toBe((index.Dispatcher.prototype as unknown as { request: unknown }).request)
    const seen: string[] = []
    const server = createServer((req, res) => {
      seen.push(`${req.method} ${req.url}`)
      res.end('body')
    }).listen(0, '127.0.0.1')
    await new Promise((ok) => server.once('listening', ok))
    const dispatcher = createDispatcher()
    try {
      const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
      const res = await request(`${base}/b/c?d=1`, { dispatcher, method: 'GET' })
      expect(res.statusCode).toBe(200)
      expect(await res.body.text()).toBe('body')
      expect(seen).toEqual(['GET /b/c?d=1'])
    } finally {
      await dispatcher.close()
      server.close()
    }
  })
})

describe('network failures', () => {
  it('a host that does not resolve is one EFETCH line, not a stack trace', async () => {
    const fail = Object.assign(new Error('getaddrinfo ENOTFOUND dl.k8s.io'), { code: 'ENOTFOUND' })
    const e = await withRetries('kubeadm 1.29.3', 'https://u:p@dl.k8s.io/x?t=1', httpDefaults({ backoffMs: 1 }), async () => Promise.reject(fail)).catch(
      (x: unknown) => x,
    )
    expect(e).toMatchObject({ code: 'EFETCH', exitCode: 1 })
    expect((e as Error).message).toBe(
      'kubeadm 1.29.3: https://REDACTED@dl.k8s.io/x?REDACTED: getaddrinfo ENOTFOUND dl.k8s.io; check the network, the proxy or --mirror',
    )
  })
})

describe('checksum files', () => {
  const hex = 'a'.repeat(64)
  const other = 'b'.repeat(64)
  it('reads a bare hash, sha256sum lines, binary-mode lines and paths', () => {
    expect(pickChecksum(`${hex}\n`, 'kubeadm')).toBe(hex)
    expect(pickChecksum(`${other}  runc.arm64\n${hex}  runc.amd64\n`, 'runc.amd64')).toBe(hex)
    expect(pickChecksum(`${hex} *bin/calicoctl-linux-amd64\n`, 'calicoctl-linux-amd64')).toBe(hex)
    expect(pickChecksum(`${other}  something-else\n`, 'runc.amd64')).toBeUndefined()
  })
})

describe('terminal progress', () => {
  it('shows each active download with percent, bytes and rate', () => {
    const rows = renderRows([{ label: 'containerd 1.7.16', total: 4 << 20, bytes: 1 << 20, started: 0 }], 1000, 80)
    expect(rows).toEqual([' 25% containerd 1.7.16  1.0 MiB / 4.0 MiB  1.0 MiB/s'])
  })
  it('shows the total first (bytes, files, elapsed, ETA) and one row per image, however many blobs', () => {
    const m = 1 << 20
    const rows = renderRows(
      [
        { label: 'pause manifest', total: m, bytes: m, started: 0, group: 'registry.k8s.io/pause:3.9' },
        { label: 'pause blob 1', total: 3 * m, bytes: m, started: 0, group: 'registry.k8s.io/pause:3.9' },
        { label: 'kubeadm 1.29.3', total: 4 * m, bytes: 2 * m, started: 0 },
      ],
      2000,
      120,
      { items: 10, bytes: 16 * m, doneItems: 3, doneBytes: 4 * m, started: 0 },
    )
    expect(rows).toEqual([
      'total 4.0 MiB / 16.0 MiB, 3/10 files and images, 2 s, 2.0 MiB/s, ETA 6 s',
      ' 50% registry.k8s.io/pause:3.9  (2 blobs)  2.0 MiB / 4.0 MiB  1.0 MiB/s',
      ' 50% kubeadm 1.29.3  2.0 MiB / 4.0 MiB  1.0 MiB/s',
    ])
    // Files whose size the lock does not give: no byte total, no ETA, rather than a wrong one.
    expect(renderRows([], 2000, 120, { items: 10, bytes: 0, unsized: 4, doneItems: 3, doneBytes: 4 << 20, started: 0 })).toEqual([
      'total 4.0 MiB (4 of unknown size), 3/10 files and images, 2 s, 2.0 MiB/s',
    ])
  })

  it("counts an image's blobs as one item, done with its last; a file learns its size when its Content-Length comes, and the total gets a denominator and an ETA", () => {
    const lines: string[] = []
    const p = new LineProgress((s) => lines.push(s.trim()))
    p.expect(1, 0, 1)
    p.expect(3, 300, 0, new Map([['docker.io/calico/node:v3.28.0', 3]]))
    const total = () => renderRows([], 2000, 200, (p as unknown as { totals: Totals }).totals)[0]
    expect(total()).toMatch(/\(1 of unknown size\), 0\/2 files and images/)
    p.sized('calico.yaml', 700)
    expect(total()).toMatch(/^total 0 B \/ 1000 B, 0\/2 files and images/)
    p.sized('calico.yaml', 700) // a transfer that starts over learns it again: counted once
    expect(total()).toMatch(/^total 0 B \/ 1000 B,/)
    for (const b of ['b1', 'b2', 'b3']) p.start(b, `calico/node blob ${b}`, 100, 'docker.io/calico/node:v3.28.0')
    p.done('b1', 'fetched')
    p.done('b2', 'fetched')
    expect(lines.at(-1)).toMatch(/\(0\/2\)$/)
    p.done('b3', 'fetched')
    expect(lines.at(-1)).toMatch(/\(1\/2\)$/)
  })
})
