import { readdir, readFile } from 'node:fs/promises'
import { join, relative } from 'node:path'
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

const importsOf = (text: string): string[] => [...text.matchAll(/(?:^|\n)\s*(?:import|export)[^'"]*?from\s+['"]([^'"]+)['"]/g)].map((m) => m[1]!)

describe('layering', () => {
  // The installer runs on air-gapped nodes: it must never pull in the builder, an HTTP
  // client or a registry client (go-containerregistry's depcheck does the same).
  it('the installer imports neither the builder nor network libraries', async () => {
    const bad: string[] = []
    for (const file of await sources(join(REPO, 'installer'))) {
      for (const spec of importsOf(await readFile(file, 'utf8'))) {
        if (spec.includes('/builder/') || spec.startsWith('../builder') || ['undici', 'p-limit'].includes(spec)) bad.push(`${relative(REPO, file)} imports ${spec}`)
      }
    }
    expect(bad).toEqual([])
  })

  it('the core does no HTTP and no process spawning', async () => {
    const bad: string[] = []
    for (const file of await sources(join(REPO, 'installer', 'core'))) {
      for (const spec of importsOf(await readFile(file, 'utf8'))) if (/^node:(http|https|net|child_process)$/.test(spec)) bad.push(`${relative(REPO, file)} imports ${spec}`)
    }
    expect(bad).toEqual([])
  })
})
