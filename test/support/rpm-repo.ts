import { execFileSync } from 'node:child_process'
import { createHash } from 'node:crypto'
import { cp, mkdir, readdir, readFile, rm, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { gunzipSync } from 'node:zlib'

/** One test package, shaped like a real one: its provides, requires (sonames, files, versions, rich deps) and files. */
export interface RpmSpec {
  name: string
  version: string
  release: string
  epoch?: number
  arch?: 'x86_64' | 'noarch' | 'i686'
  provides?: string[]
  requires?: string[]
  files?: string[]
}

/** Builds each spec with the real rpmbuild (Debian's rpm package) into `dir`/RPMS; returns the .rpm paths by name-arch. */
export async function buildRpms(dir: string, specs: readonly RpmSpec[]): Promise<Map<string, string>> {
  await mkdir(join(dir, 'SPECS'), { recursive: true })
  const out = new Map<string, string>()
  for (const s of specs) {
    const arch = s.arch ?? 'x86_64'
    const files = s.files ?? [`/usr/share/doc/${s.name}/README`]
    const spec = [
      `Name: ${s.name}`,
      ...(s.epoch ? [`Epoch: ${s.epoch}`] : []),
      `Version: ${s.version}`,
      `Release: ${s.release}`,
      'Summary: kube-airgap test package',
      'License: MIT',
      ...(arch === 'noarch' ? ['BuildArch: noarch'] : []),
      'AutoReqProv: no',
      ...(s.provides ?? []).map((p) => `Provides: ${p}`),
      ...(s.requires ?? []).map((r) => `Requires: ${r}`),
      '%description',
      'A package made by the kube-airgap tests.',
      '%install',
      ...files.flatMap((f) => [`mkdir -p %{buildroot}$(dirname ${f})`, `printf '%s\\n' '${s.name}' > %{buildroot}${f}`]),
      '%files',
      ...files,
      '',
    ].join('\n')
    const path = join(dir, 'SPECS', `${s.name}-${arch}.spec`)
    await writeFile(path, spec)
    execFileSync(
      'rpmbuild',
      // No debuginfo and no post-install scripts: they would call file, strip and objdump, which a clean CI machine need not have.
      [
        '-bb',
        '--target',
        arch,
        '--define',
        `_topdir ${dir}`,
        '--define',
        '_build_id_links none',
        '--define',
        'debug_package %{nil}',
        '--define',
        '__os_install_post %{nil}',
        path,
      ],
      { stdio: 'ignore' },
    )
    const built = join(dir, 'RPMS', arch, `${s.name}-${s.version}-${s.release}.${arch}.rpm`)
    out.set(`${s.name}.${arch}`, built)
  }
  return out
}

/**
 * A repository in the real layout at `repo`: Packages/<first letter>/<file>.rpm, repodata
 * by createrepo_c (with comps when given), and repomd.xml.asc signed by `key` from gnupg's
 * home (unsigned when no key; at `signedAt`, gpg's --faked-system-time, when given). With
 * `modules`, that modules.yaml added by the real modifyrepo_c (as EL8's AppStream has one).
 */
export async function writeRepo(
  repo: string,
  rpms: readonly string[],
  o: { comps?: string; modules?: string; gnupg: string; key?: string; signedAt?: string; compress?: 'gz' | 'xz' | 'bz2' | 'zstd' },
): Promise<void> {
  for (const rpm of rpms) {
    const file = rpm.split('/').pop()!
    await mkdir(join(repo, 'Packages', file[0]!.toLowerCase()), { recursive: true })
    await cp(rpm, join(repo, 'Packages', file[0]!.toLowerCase(), file))
  }
  const args = ['--quiet', '--checksum', 'sha256', '--general-compress-type', o.compress === 'zstd' ? 'gz' : (o.compress ?? 'gz'), '--simple-md-filenames']
  if (o.comps) {
    await writeFile(join(repo, 'comps.xml'), o.comps)
    args.push('--groupfile', join(repo, 'comps.xml'))
  }
  execFileSync('createrepo_c', [...args, repo], { stdio: 'ignore' })
  if (o.compress === 'zstd') await zstdPrimary(repo)
  if (o.modules) {
    await writeFile(join(repo, 'modules.yaml'), o.modules)
    execFileSync('modifyrepo_c', ['--mdtype=modules', '--simple-md-filenames', join(repo, 'modules.yaml'), join(repo, 'repodata')], {
      stdio: 'ignore',
    })
  }
  if (o.key)
    execFileSync(
      'gpg',
      [
        '--batch',
        '--homedir',
        o.gnupg,
        ...(o.signedAt ? ['--faked-system-time', o.signedAt] : []),
        '--yes',
        '--local-user',
        o.key,
        '--armor',
        '--detach-sign',
        join(repo, 'repodata', 'repomd.xml'),
      ],
      { stdio: 'ignore' },
    )
}

/**
 * primary.xml as createrepo_c 1.0 and later write it by default, zstd-compressed (this
 * machine's createrepo_c 0.17 cannot): recompressed with the real zstd, and repomd.xml's
 * entry rewritten to its location, sha256 and size, as createrepo_c would have.
 */
async function zstdPrimary(repo: string): Promise<void> {
  const md = join(repo, 'repodata')
  const xml = gunzipSync(await readFile(join(md, 'primary.xml.gz')))
  const zst = execFileSync('zstd', ['-q', '-c', '-19'], { input: xml })
  await writeFile(join(md, 'primary.xml.zst'), zst)
  await rm(join(md, 'primary.xml.gz'))
  const repomd = await readFile(join(md, 'repomd.xml'), 'utf8')
  await writeFile(
    join(md, 'repomd.xml'),
    repomd.replace(/(<data type="primary">[\s\S]*?<\/data>)/, (entry) =>
      entry
        .replace(/<checksum type="sha256">[0-9a-f]+<\/checksum>/, `<checksum type="sha256">${createHash('sha256').update(zst).digest('hex')}</checksum>`)
        .replace(/<location href="repodata\/primary\.xml\.gz"\/>/, '<location href="repodata/primary.xml.zst"/>')
        .replace(/<size>\d+<\/size>/, `<size>${zst.length}</size>`),
    ),
  )
}

/** comps with a core group whose mandatory packages are `names` (and one optional one that is not). */
export const comps = (names: readonly string[]): string =>
  `<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE comps PUBLIC "-//Red Hat, Inc.//DTD Comps info//EN" "comps.dtd">
<comps>
  <group>
    <id>core</id>
    <name>Core</name>
    <description>Smallest possible installation</description>
    <default>false</default>
    <uservisible>false</uservisible>
    <packagelist>
${names.map((n) => `      <packagereq type="mandatory">${n}</packagereq>`).join('\n')}
      <packagereq type="optional">ethtool</packagereq>
    </packagelist>
  </group>
</comps>
`

export const listRpms = async (dir: string): Promise<string[]> => (await readdir(dir, { recursive: true })).filter((f) => f.endsWith('.rpm'))
