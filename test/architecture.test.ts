import { readdir, readFile } from 'node:fs/promises'
import { dirname, join, relative, resolve } from 'node:path'
import { describe, expect, it } from 'vitest'
import { REPO } from './support/fake-upstream.js'

async function sources(dir: string): Promise<string[]> {
  const out: string[] = []
  for (const e of await readdir(dir, { withFileTypes: true })) {
    const p = join(dir, e.name)
    if (e.isDirectory()) out.push(...(await sources(p)))
    else if (e.name.endsWith('.ts')) out.push(p)
  }
  return out
}

const importsOf = (text: string): string[] =>
  [...text.matchAll(/(?:^|\n)\s*(?:import|export)[^'"]*?from\s+['"]([^'"]+)['"]|import\(\s*['"]([^'"]+)['"]\s*\)/g)].map((m) => (m[1] ?? m[2])!)

/** Every import of every source under `pkg`, as `{ file, spec, target }` (target: the top folder a relative import lands in). */
async function edges(pkg: string): Promise<{ file: string; spec: string; target?: string }[]> {
  const out: { file: string; spec: string; target?: string }[] = []
  for (const file of await sources(join(REPO, pkg))) {
    for (const spec of importsOf(await readFile(file, 'utf8'))) {
      const target = spec.startsWith('.') ? relative(REPO, resolve(dirname(file), spec)).split('/')[0] : undefined
      out.push({ file: relative(REPO, file), spec, ...(target ? { target } : {}) })
    }
  }
  return out
}

const show = (e: { file: string; spec: string }) => `${e.file} imports ${e.spec}`

// Three packages: bundle/ (the format both sides share) under builder/ and installer/, which
// never import each other (go-containerregistry's depcheck test does the same for its registry).
describe('layering', () => {
  it('sees the imports it judges (the check cannot pass on an empty tree)', async () => {
    for (const pkg of ['bundle', 'builder', 'installer']) expect((await edges(pkg)).filter((e) => e.target).length, pkg).toBeGreaterThan(10)
  })

  it('bundle/ imports nothing of ours outside bundle/', async () => {
    expect((await edges('bundle')).filter((e) => e.target && e.target !== 'bundle').map(show)).toEqual([])
  })

  it('builder/ never imports installer/', async () => {
    expect((await edges('builder')).filter((e) => e.target === 'installer').map(show)).toEqual([])
  })

  // The installer runs on air-gapped nodes: it must never pull in the builder, an HTTP
  // client or a registry client.
  it('installer/ imports neither builder/ nor network libraries', async () => {
    expect((await edges('installer')).filter((e) => e.target === 'builder' || ['undici', 'p-limit'].includes(e.spec)).map(show)).toEqual([])
  })

  // The shared format is read by both command lines, and by neither's library of choice.
  it('bundle/ knows no command-line library', async () => {
    expect((await edges('bundle')).filter((e) => e.spec === 'commander' || e.spec.startsWith('commander/')).map(show)).toEqual([])
  })

  it('bundle/ does no HTTP and no process spawning', async () => {
    expect((await edges('bundle')).filter((e) => /^node:(http|https|net|child_process)$/.test(e.spec)).map(show)).toEqual([])
  })
})

// The builder's folders are its stages: download/ at the bottom (HTTP, the cache, hashing),
// images/ and packages/ over it, lock/ and pack/ over those, and at the top the commands and
// the build that reads them in order (cli.ts, commands/, build.ts, plan.ts, delta.ts, ...).
describe('inside builder/', () => {
  const below: Record<string, string[]> = {
    download: [],
    images: ['download'],
    packages: ['download'],
    pack: ['download', 'images'],
    lock: ['download', 'images', 'packages'],
  }
  // Leaves at the top that every stage may read: the progress line, the options' type, our own files.
  const leaves = ['builder/progress.ts', 'builder/options.ts', 'builder/package-files.ts']

  it('a stage imports only the stages below it and the shared leaves, never the top', async () => {
    const bad: string[] = []
    let seen = 0
    for (const e of await edges('builder')) {
      const [, stage] = e.file.split('/')
      if (!e.spec.startsWith('.') || !stage || !(stage in below)) continue
      seen++
      const target = relative(REPO, resolve(dirname(join(REPO, e.file)), e.spec)).replace(/\.js$/, '.ts')
      const [top, into] = target.split('/')
      if (top !== 'builder' || into === stage || below[stage]!.includes(into!) || leaves.includes(target)) continue
      bad.push(show(e))
    }
    expect(seen).toBeGreaterThan(20)
    expect(bad).toEqual([])
  })

  it('every builder file sits in a stage folder or is one of the top files', async () => {
    const top = (await readdir(join(REPO, 'builder'), { withFileTypes: true })).filter((e) => e.isDirectory()).map((e) => e.name)
    expect(top.sort()).toEqual(['commands', ...Object.keys(below)].sort())
  })
})

describe('inside installer/', () => {
  // The phases are the plan; what they share (reading the node, the cluster, containerd) lives
  // beside them, so that doctor and the checks never pull a phase in to reuse a helper.
  it('helpers never import a phase: only cli.ts, the commands and the phases themselves do', async () => {
    const helpers = (await edges('installer')).filter((e) => /^installer\/[^/]+\.ts$/.test(e.file) && e.file !== 'installer/cli.ts')
    expect(helpers.length).toBeGreaterThan(20)
    expect(helpers.filter((e) => e.spec.startsWith('./phases/')).map(show)).toEqual([])
  })

  it('every node path is a constant of node-paths.ts: no other source spells one', async () => {
    const spelled: string[] = []
    for (const file of await sources(join(REPO, 'installer'))) {
      if (file.endsWith('node-paths.ts')) continue
      const lines = (await readFile(file, 'utf8')).split('\n')
      for (const [i, line] of lines.entries()) {
        if (/^\s*(\/\/|\*|\/\*\*)/.test(line)) continue
        for (const m of line.matchAll(/['"`](\/(?:etc|var|run|usr|opt|proc|sys|root|bin|sbin|lib|srv|home)\/[^'"`\s]*)/g))
          spelled.push(`${relative(REPO, file)}:${i + 1}: ${m[1]}`)
      }
    }
    expect(spelled).toEqual([])
  })

  // The import scan above sees `from '...'`; the bundle esbuild makes sees everything that is
  // really carried (a bare import, a re-export, a createRequire'd package).
  it('the installer as esbuild bundles it carries only bundle/ and installer/ sources and the packages a node may hold', async () => {
    const { build } = await import('esbuild')
    const r = await build({
      entryPoints: [join(REPO, 'installer/cli.ts')],
      absWorkingDir: REPO,
      bundle: true,
      platform: 'node',
      format: 'esm',
      target: 'node20',
      metafile: true,
      write: false,
      logLevel: 'silent',
    })
    // A package's path is what follows its last node_modules/ (a linked node_modules, as in a
    // git worktree, puts a ../ before it).
    const inputs = Object.keys(r.metafile.inputs)
    const inPackage = (i: string) => i.split('node_modules/').at(-1)!
    const ours = new Set(inputs.filter((i) => !i.includes('node_modules/')).map((i) => i.split('/')[0]))
    const packages = new Set(
      inputs
        .filter((i) => i.includes('node_modules/'))
        .map((i) =>
          inPackage(i)
            .split('/')
            .slice(0, inPackage(i).startsWith('@') ? 2 : 1)
            .join('/'),
        ),
    )
    expect([...ours].sort()).toEqual(['bundle', 'installer'])
    expect([...packages].sort()).toEqual(['bcryptjs', 'commander', 'js-yaml', 'minipass', 'ssri', 'tar'])
  })
})
