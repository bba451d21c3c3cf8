import { readdir, readFile, stat } from 'node:fs/promises'
import { dirname, join, relative, resolve } from 'node:path'
import { describe, expect, it } from 'vitest'
import { main as bundleMain } from '../builder/cli.js'
import { memoryIo } from '../bundle/report.js'
import { main as installMain } from '../installer/cli.js'
import { REPO } from './support/fake-upstream.js'

/**
 * The documents a newcomer reads: README.md and docs/ in English, README.zh-CN.md and
 * docs/zh-CN/ in Chinese. Every flag either command line offers is documented in both, every
 * relative link resolves (its anchor too), and the architecture page names every source folder.
 */
const LANGUAGES = {
  en: { readme: 'README.md', dir: 'docs' },
  'zh-CN': { readme: 'README.zh-CN.md', dir: 'docs/zh-CN' },
} as const

async function pages(lang: keyof typeof LANGUAGES): Promise<string[]> {
  const { readme, dir } = LANGUAGES[lang]
  const docs = (await readdir(join(REPO, dir))).filter((f) => f.endsWith('.md')).map((f) => join(dir, f))
  return [readme, ...docs]
}

/** Every long option of every command of a command line, from its own --help. */
async function flagsOf(main: (argv: string[], io: ReturnType<typeof memoryIo>) => Promise<number>): Promise<Map<string, string>> {
  const help = async (argv: string[]) => {
    const io = memoryIo()
    expect(await main([...argv, '--help'], io), argv.join(' ')).toBe(0)
    return io.stdout
  }
  const top = await help([])
  const commands = [...top.split('\nCommands:\n')[1]!.matchAll(/^ {2}([a-z][a-z-]*)/gm)].map((m) => m[1]!).filter((c) => c !== 'help')
  const flags = new Map<string, string>()
  for (const cmd of [[], ...commands.map((c) => [c])]) {
    const options = (await help(cmd)).split('\nOptions:\n')[1] ?? ''
    for (const m of options.matchAll(/^ {2}(?:-\w, )?(--[a-z][a-z-]*)/gm)) if (!flags.has(m[1]!)) flags.set(m[1]!, cmd.join(' ') || '(top)')
  }
  return flags
}

/** GitHub's anchor for a heading: lower case, punctuation and symbols gone, spaces to hyphens. */
const slug = (heading: string): string =>
  heading
    .trim()
    .toLowerCase()
    .replace(/[^\p{L}\p{M}\p{N}\p{Pc} -]/gu, '')
    .replace(/ /g, '-')

/** The anchors of a markdown page: its headings outside code blocks, numbered when repeated, as GitHub does. */
function anchors(text: string): Set<string> {
  const out = new Set<string>()
  let fence = false
  for (const line of text.split('\n')) {
    if (line.startsWith('```')) fence = !fence
    const h = !fence && /^#{1,6} (.*)$/.exec(line)
    if (!h) continue
    const base = slug(h[1]!)
    let s = base
    for (let n = 1; out.has(s); n++) s = `${base}-${n}`
    out.add(s)
  }
  return out
}

describe('the documents', () => {
  for (const [cli, main] of [
    ['bundle', bundleMain],
    ['./install', installMain],
  ] as const) {
    it(`document every flag of ${cli} in both languages`, async () => {
      const flags = await flagsOf(main)
      expect(flags.size).toBeGreaterThan(10)
      for (const lang of Object.keys(LANGUAGES) as (keyof typeof LANGUAGES)[]) {
        const text = (await Promise.all((await pages(lang)).map((p) => readFile(join(REPO, p), 'utf8')))).join('\n')
        const missing = [...flags].filter(([f]) => !new RegExp(`${f}(?![a-z-])`).test(text)).map(([f, cmd]) => `${f} (${cmd})`)
        expect(missing, `${cli} flags missing from the ${lang} documents`).toEqual([])
      }
    })
  }

  it('link only to files and headings that exist', async () => {
    const broken: string[] = []
    let seen = 0
    for (const page of [...(await pages('en')), ...(await pages('zh-CN'))]) {
      const text = await readFile(join(REPO, page), 'utf8')
      for (const m of text.matchAll(/\]\(([^)\s]+)\)/g)) {
        const target = m[1]!
        if (/^[a-z]+:/.test(target)) continue
        seen++
        const [path, anchor] = target.split('#') as [string, string | undefined]
        const file = path ? resolve(dirname(join(REPO, page)), path) : join(REPO, page)
        const st = await stat(file).catch(() => undefined)
        if (!st) broken.push(`${page}: ${target} (no such file)`)
        else if (anchor && !anchors(await readFile(file, 'utf8')).has(anchor)) broken.push(`${page}: ${target} (no such heading in ${relative(REPO, file)})`)
      }
    }
    expect(seen).toBeGreaterThan(20)
    expect(broken).toEqual([])
  })

  it('every page of one language has its counterpart in the other', async () => {
    const names = async (dir: string) => (await readdir(join(REPO, dir))).filter((f) => f.endsWith('.md')).sort()
    expect(await names('docs/zh-CN')).toEqual(await names('docs'))
  })

  it('the architecture page names every source folder, in both languages', async () => {
    const folders: string[] = []
    for (const top of ['bundle', 'builder', 'installer']) {
      folders.push(`${top}/`)
      for (const e of await readdir(join(REPO, top), { withFileTypes: true })) if (e.isDirectory()) folders.push(`${top}/${e.name}/`)
    }
    for (const page of ['docs/architecture.md', 'docs/zh-CN/architecture.md']) {
      const text = await readFile(join(REPO, page), 'utf8')
      const named = (f: string) => text.includes(`\`${f}\``) || text.includes(`\`${f.split('/').slice(1).join('/')}\``)
      expect(
        folders.filter((f) => !named(f)),
        page,
      ).toEqual([])
    }
  })
})
