import { execFileSync } from 'node:child_process'
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { containerdConfig } from '../../installer/templates.js'
import { REPO } from '../support/fake-upstream.js'

/** Every key of a TOML file this simple (tables, key = value, comments), as `table.key` -> the value's kind. */
function keys(text: string): Map<string, string> {
  const out = new Map<string, string>()
  let table = ''
  for (const raw of text.split('\n')) {
    const line = raw.trim()
    if (!line || line.startsWith('#')) continue
    const t = /^\[(.+)\]$/.exec(line)
    if (t) {
      table = t[1]!.replaceAll('"', "'")
      out.set(table, 'table')
      continue
    }
    const kv = /^([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.+)$/.exec(line)
    if (!kv) continue
    const v = kv[2]!
    out.set(`${table}.${kv[1]}`, /^['"]/.test(v) ? 'string' : /^\[/.test(v) ? 'array' : /^(true|false)$/.test(v) ? 'boolean' : 'number')
  }
  return out
}

describe("the installer's containerd configuration", () => {
  it('for containerd 2.x is version 3, and every table and key it sets is one containerd 2.2 has, with a value of the same kind', async () => {
    const upstream = keys(await readFile(join(REPO, 'test/fixtures/reference/containerd-v2.2.0-config.toml'), 'utf8'))
    for (const selinux of [false, true]) {
      const text = containerdConfig('registry.k8s.io/pause:3.10.1', selinux, '2.2.1')
      expect(text).toMatch(/^version = 3$/m)
      const ours = keys(text)
      ours.delete('.version')
      for (const [k, kind] of ours) expect(upstream.get(k), k).toBe(kind)
      expect(ours.get("plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options.SystemdCgroup")).toBe('boolean')
    }
    expect(containerdConfig('registry.k8s.io/pause:3.10', false, '2.0.6')).toContain("bin_dir = '/opt/cni/bin'")
    expect(containerdConfig('registry.k8s.io/pause:3.10', false, '2.1.5')).toContain("bin_dirs = ['/opt/cni/bin']")
  })

  it('for containerd 1.x stays version 2, which the real containerd here loads with its CRI plugin and the sandbox image the bundle carries', async () => {
    const text = containerdConfig('registry.k8s.io/pause:3.9', false, '1.7.16')
    expect(text).toMatch(/^version = 2$/m)
    const dir = await mkdtemp(join(tmpdir(), 'ka-ctdcfg-'))
    try {
      await writeFile(join(dir, 'config.toml'), text)
      const dump = execFileSync('containerd', ['--config', join(dir, 'config.toml'), 'config', 'dump'], { encoding: 'utf8' })
      expect(dump).toContain('sandbox_image = "registry.k8s.io/pause:3.9"')
      expect(dump).toContain('SystemdCgroup = true')
    } finally {
      await rm(dir, { recursive: true, force: true })
    }
  })
})
