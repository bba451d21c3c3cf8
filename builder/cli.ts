#!/usr/bin/env node
import { createPrivateKey, generateKeyPairSync } from 'node:crypto'
import { existsSync } from 'node:fs'
import { mkdir, readFile, writeFile } from 'node:fs/promises'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { Command, Option } from 'commander'
import { writeAtomic } from '../bundle/atomic.js'
import { addCompletionCommand } from '../bundle/completion.js'
import { KaError } from '../bundle/errors.js'
import { commanderOutput, printJson as writeJson, processIo, reportFailure, runWhenExecuted, type Io } from '../bundle/report.js'
import { parseLock, serializeLock } from '../bundle/lock.js'
import { parsePlatform, PLATFORMS } from '../bundle/platform.js'
import { deltaSummary, type VerifyReport, verifyBundle, verifyNotes, verifyTarStream } from '../bundle/verify.js'
import { SBOM_FILE } from '../bundle/layout.js'
import { TOOL_VERSION } from '../bundle/version.js'
import { loadYaml } from '../bundle/yaml.js'
import { KUBEADM_TABLE } from './package-files.js'
import { keyFingerprint, publicKeyOnly } from '../bundle/signing.js'
import { VERIFIER_NAME, verifierScript } from './verifier.js'
import { checkParts, concatParts, FAT32_PART, joinParts, parseSize, partsFileFor, type PartsCheck } from './parts.js'
import { type BuildResult, buildBundle, readLock } from './build.js'
import { Cache } from './cache.js'
import { httpDefaults } from './http.js'
import { inspectBundle, previewLock, readBundleFile } from './inspect.js'
import { MIRRORS_ENV, resolveMirrors } from './mirrors.js'
import { createLock } from './lock.js'
import { readManifest } from './manifest.js'
import { progressFor } from './progress.js'
import { formatBytes } from '../bundle/text.js'

/** The package's own folder: where the embedded default lock and manifest live. */
const PACKAGE_DIR = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..')

/** A file in the current folder wins; else the one shipped with kube-airgap. */
const defaultPath = (rel: string): string => (existsSync(rel) ? rel : join(PACKAGE_DIR, rel))

const collect = (v: string, prev: string[]): string[] => [...prev, v]

function concurrency(v: string): number {
  const n = Number(v)
  if (!Number.isInteger(n) || n < 1 || n > 64) throw new KaError('EUSAGE', `--concurrency ${JSON.stringify(v)}: give a whole number from 1 to 64`)
  return n
}

/** The command line, mapped onto the builder's core calls; output through `io`. */
function makeProgram(io: Io): Command {
  const out = (s: string) => io.out(s)
  const err = (s: string) => io.err(s)
  const printJson = (value: unknown) => writeJson(io, value)
  const program = new Command('bundle')
    .description('Build and check air-gapped Kubernetes bundles (kube-airgap).')
    .exitOverride()
    .configureOutput(commanderOutput('bundle', io, 'bundle'))
    .addHelpText(
      'after',
      '\nExamples:\n  bundle build                       # the embedded lock: dist/kube-airgap-v1.29.3-linux-amd64.tar\n  bundle lock --manifest my.yaml     # then: bundle build --lock bundle.lock.json\n  bundle <command> --help            # each command, with examples',
    )
    .version(`kube-airgap ${TOOL_VERSION}`, '-V, --version', 'print the version')

  program
    .command('lock')
    .description('resolve a manifest into a lock: every file with its URL and sha256, every image with its digest')
    .addHelpText(
      'after',
      `\nExamples:\n  bundle lock                                   # manifests/default.yaml -> bundle.lock.json\n  bundle lock --manifest my.yaml --out my.lock.json --mirrors manifests/mirrors/china.yaml`,
    )
    .option('--manifest <file>', 'the manifest to lock', defaultPath('manifests/default.yaml'))
    .option('--out <file>', 'where to write the lock', 'bundle.lock.json')
    .addOption(mirrorOption())
    .addOption(registryMirrorOption())
    .addOption(mirrorsFileOption())
    .option('--cache <dir>', 'the download cache', Cache.defaultRoot())
    .option('--concurrency <n>', 'parallel requests', '8')
    .option('--keyring <file>', 'also trust this OpenPGP keyring for the OS package archives (a mirror that signs its own indexes; repeatable)', collect, [])
    .option('--json', 'print the result as JSON')
    .action(
      async (opts: {
        manifest: string
        out: string
        mirror: string[]
        registryMirror: string[]
        mirrors?: string
        cache: string
        concurrency: string
        keyring: string[]
        json?: boolean
      }) => {
        for (const k of opts.keyring)
          if (!existsSync(k)) throw new KaError('EUSAGE', `--keyring ${k}: no such file; give an OpenPGP keyring (gpg --export > FILE)`)
        const { mirrors, registryMirrors } = await resolveMirrors(opts)
        const manifest = await readManifest(opts.manifest)
        const progress = progressFor({ json: opts.json })
        let lock: Awaited<ReturnType<typeof createLock>>
        try {
          lock = await createLock(manifest, {
            cache: new Cache(opts.cache),
            http: httpDefaults(),
            mirrors,
            registryMirrors,
            concurrency: concurrency(opts.concurrency),
            progress,
            keyrings: opts.keyring.map((k) => resolve(k)),
          })
        } finally {
          progress.close()
        }
        // What `bundle build` will read back is checked before it is written: never a lock build rejects.
        const text = serializeLock(lock)
        parseLock(text, `the lock made from ${opts.manifest}`)
        await writeAtomic(opts.out, text)
        if (opts.json) printJson({ ok: true, lock: opts.out, files: lock.files.length, images: lock.images.length })
        else {
          out(`${opts.out}: ${lock.files.length} files, ${lock.images.length} images for ${lock.platforms.join(', ')}\n`)
        }
      },
    )

  program
    .command('build')
    .description('download everything the lock pins, check it, and write one self-verifying bundle tar')
    .addHelpText(
      'after',
      `\nExamples:\n  bundle build                                  # the embedded lock, linux/amd64, into dist/\n  bundle build --platform linux/arm64 --os ubuntu-22.04 --sign keys/kube-airgap.key\n  bundle build --media fat32 --mirrors manifests/mirrors/china.yaml\n  bundle build --lock v1.30.lock.json --upgrade-from kube-airgap-v1.29.3-linux-amd64/bundle.lock.json   # a delta: only what the old bundle lacks`,
    )
    .option('--lock <file>', 'the lock to build', defaultPath('bundle.lock.json'))
    .addOption(new Option('--platform <platform>', 'the platform of the nodes').choices([...PLATFORMS]).default('linux/amd64'))
    .option('--out <dir>', 'where to write the bundle', 'dist')
    .option('--cache <dir>', 'the download cache, shared by all builds', Cache.defaultRoot())
    .addOption(mirrorOption())
    .addOption(registryMirrorOption())
    .addOption(mirrorsFileOption())
    .option('--concurrency <n>', 'parallel downloads', '8')
    .option('--sign <key>', 'sign the bundle with this Ed25519 private key (from bundle keygen)')
    .option('--split <size>', 'cut the tar into parts of SIZE (e.g. 3900M) with NAME.parts.sha256')
    .addOption(new Option('--media <kind>', 'fat32: parts that fit a FAT32 stick (4095 MiB); exfat: one tar').choices(['fat32', 'exfat']))
    .option('--os <releases>', 'carry OS packages only for these releases (comma separated, e.g. ubuntu-22.04,debian-12); default: every release the lock has')
    .option('--upgrade-from <lock>', "a delta bundle: leave out what the bundle of this older lock holds (best: that bundle's own bundle.lock.json)")
    .option('--json', 'print the result as JSON')
    .action(
      async (opts: {
        upgradeFrom?: string
        lock: string
        platform: string
        out: string
        cache: string
        mirror: string[]
        registryMirror: string[]
        mirrors?: string
        concurrency: string
        os?: string
        sign?: string
        split?: string
        media?: string
        json?: boolean
      }) => {
        const signingKeyPem = opts.sign
          ? await readFile(opts.sign, 'utf8').catch(() => {
              throw new KaError('EUSAGE', `--sign ${opts.sign}: cannot read the private key; make one with \`bundle keygen --out DIR\``)
            })
          : undefined
        if (signingKeyPem) {
          try {
            if (createPrivateKey(signingKeyPem).asymmetricKeyType !== 'ed25519') throw new Error()
          } catch {
            throw new KaError('EUSAGE', `--sign ${opts.sign}: not an Ed25519 private key in PEM form; make one with \`bundle keygen --out DIR\``)
          }
        }
        const splitBytes = opts.split ? parseSize(opts.split) : opts.media === 'fat32' ? FAT32_PART : undefined
        const result = await buildBundle({
          ...(signingKeyPem ? { signingKeyPem } : {}),
          ...(splitBytes ? { splitBytes } : {}),
          ...(opts.upgradeFrom ? { upgradeFrom: opts.upgradeFrom } : {}),
          lockPath: opts.lock,
          platform: parsePlatform(opts.platform, '--platform'),
          outDir: opts.out,
          cache: new Cache(opts.cache),
          ...(await resolveMirrors(opts)),
          ...(opts.os
            ? {
                releases: opts.os
                  .split(',')
                  .map((r) => r.trim())
                  .filter(Boolean),
              }
            : {}),
          concurrency: concurrency(opts.concurrency),
          progress: progressFor({ json: opts.json }),
        })
        if (opts.json) printJson({ ok: true, ...result })
        else {
          const fromCache = result.files.filter((f) => f.from === 'cache').length
          err(
            `built ${result.name}: ${result.files.length} files and ${result.images.length} images (${fromCache} files from cache, ${formatBytes(result.downloadedBytes)} downloaded), ${formatBytes(result.size)}\n`,
          )
          out(result.parts ? `${result.parts.join('\n')}\n${result.partsFile}\n` : `${result.bundle}\n`)
          err(nextSteps(result))
        }
      },
    )

  program
    .command('keygen')
    .description(
      `make an Ed25519 key pair for signing bundles: kube-airgap.key (private, 0600), kube-airgap.pub, and ${VERIFIER_NAME}, the standalone verifier with the public key in it`,
    )
    .requiredOption('--out <dir>', 'where to write the keys (required)')
    .addHelpText(
      'after',
      `\nExamples:\n  bundle keygen --out ~/kube-airgap-keys          # kube-airgap.key, kube-airgap.pub and ${VERIFIER_NAME} in it\n  bundle build --sign ~/kube-airgap-keys/kube-airgap.key\n  # carry ~/kube-airgap-keys/${VERIFIER_NAME} to the air-gapped side once, by your own trusted channel`,
    )
    .action(async (opts: { out: string }) => {
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
    })

  program
    .command('verifier')
    .description(`write ${VERIFIER_NAME}, the standalone verifier, for an existing public key`)
    .requiredOption('--public-key <file>', 'the Ed25519 public key the bundles are signed for (required)')
    .option('--out <file>', 'where to write it', VERIFIER_NAME)
    .addHelpText('after', `\nExamples:\n  bundle verifier --public-key kube-airgap.pub --out /media/trusted/${VERIFIER_NAME}`)
    .action(async (opts: { publicKey: string; out: string }) => {
      const pem = await readKey(opts.publicKey)
      await writeAtomic(opts.out, verifierScript(publicKeyOnly(pem, `--public-key ${opts.publicKey}`)), { mode: 0o755 })
      out(`${opts.out} (key ${keyFingerprint(pem)})\n`)
    })

  program
    .command('join')
    .description('join split parts (NAME.tar.000 ...) into NAME.tar after checking each; `cat NAME.tar.* > NAME.tar` does the same without the checks')
    .addHelpText('after', `\nExamples:\n  bundle join kube-airgap-v1.29.3-linux-amd64.parts.sha256 --out kube-airgap-v1.29.3-linux-amd64.tar`)
    .argument('<parts>', 'NAME.parts.sha256 or NAME.tar.000')
    .option('--out <file>', 'the tar to write (default: beside the parts)')
    .action(async (path: string, opts: { out?: string }) => {
      const check = await checkParts(partsFileFor(path) ?? path)
      if (check.problems.length) throw partsError(check)
      const tar = opts.out ?? join(dirname(check.parts[0]!), check.tarName)
      await joinParts(check, tar)
      out(`${tar}\n`)
    })

  program
    .command('verify')
    .description('check a bundle (tar, split parts or unpacked folder) against its SHA256SUMS and lock, and its signature')
    .addHelpText(
      'after',
      `\nExamples:\n  bundle verify dist/kube-airgap-v1.29.3-linux-amd64.tar --public-key keys/kube-airgap.pub\n  bundle verify kube-airgap-v1.29.3-linux-amd64/         # an unpacked folder`,
    )
    .argument('<path>', 'a bundle .tar, its NAME.parts.sha256 (or NAME.tar.000), or an unpacked bundle folder')
    .option('--public-key <file>', 'the bundle must be signed by this Ed25519 public key')
    .option('--require-signature', 'refuse an unsigned bundle')
    .option('--json', 'print the result as JSON')
    .action(async (path: string, opts: { publicKey?: string; requireSignature?: boolean; json?: boolean }) => {
      const vopts = {
        ...(opts.publicKey ? { publicKeyPem: publicKeyOnly(await readKey(opts.publicKey), `--public-key ${opts.publicKey}`), keySource: opts.publicKey } : {}),
        ...(opts.requireSignature ? { requireSignature: true } : {}),
      }
      const partsFile = partsFileFor(path)
      let report: VerifyReport
      if (partsFile && (path.endsWith('.parts.sha256') || /\.tar\.\d{3}$/.test(path) || (!existsSync(path) && existsSync(partsFile)))) {
        const check = await checkParts(partsFile)
        if (check.problems.length) throw partsError(check)
        report = await verifyTarStream(() => concatParts(check.parts), check.tarName, vopts)
      } else report = await verifyBundle(path, vopts)
      for (const line of verifyNotes(report)) err(`${line}\n`)
      const signature = report.signedBy ?? (report.signed ? 'present, not checked (no --public-key)' : 'none')
      if (opts.json)
        printJson({
          ok: true,
          name: report.name,
          platform: report.lock.platforms[0],
          files: report.files,
          bytes: report.bytes,
          signedBy: report.signedBy ?? null,
          signature,
          ...(report.delta ? { delta: deltaSummary(report.delta) } : {}),
        })
      else {
        out(
          `ok: ${report.name}: ${report.files} files, ${formatBytes(report.bytes)}, all match SHA256SUMS and the lock${report.signedBy ? `; signed by ${report.signedBy}` : ''}\n`,
        )
        if (!report.signedBy && report.signed)
          out(`note: the bundle is signed, but the signature was not checked: give --public-key FILE (or use ${VERIFIER_NAME})\n`)
      }
    })

  program
    .command('inspect')
    .description('show what a bundle holds: versions, sizes, images; --sbom prints its CycloneDX 1.5 SBOM')
    .addHelpText(
      'after',
      `\nExamples:\n  bundle inspect dist/kube-airgap-v1.29.3-linux-amd64.tar\n  bundle inspect dist/kube-airgap-v1.29.3-linux-amd64.tar --sbom > sbom.cdx.json`,
    )
    .argument('<path>', 'a bundle .tar, an unpacked bundle folder, or a lock (a preview of what it builds)')
    .option('--sbom', "print the bundle's SBOM (CycloneDX 1.5 JSON)")
    .option('--public-key <file>', 'say whether the signature is by this key')
    .option('--out <file>', 'with --sbom: write it to FILE')
    .option('--json', 'print the result as JSON')
    .action(async (path: string, opts: { json?: boolean; sbom?: boolean; out?: string; publicKey?: string }) => {
      if (opts.sbom) {
        const sbom = await readBundleFile(path, SBOM_FILE)
        if (opts.out) await writeAtomic(opts.out, sbom)
        else out(sbom)
        return
      }
      // A lock is a preview of the bundles it builds: nothing is downloaded.
      if (/\.json$/.test(path)) {
        const preview = previewLock(path, await readLock(path))
        if (opts.json) return printJson({ ok: true, ...preview })
        const rows = preview.platforms.map((p) => [
          p.platform,
          `${p.files} files`,
          `${p.packages} OS packages`,
          `${formatBytes(p.knownBytes)} known in advance`,
        ])
        out(
          `${path}: a lock, Kubernetes ${preview.kubernetes}; each bundle adds ${preview.images} images (their size is known once their manifests are read)\n${table(rows)}hosts: ${preview.hosts.join(', ')}\n`,
        )
        return
      }
      const info = await inspectBundle(
        path,
        opts.publicKey ? { publicKeyPem: publicKeyOnly(await readKey(opts.publicKey), `--public-key ${opts.publicKey}`) } : {},
      )
      if (opts.json) return printJson({ ok: true, ...info })
      const signature = info.signature.signedBy
        ? `signed by ${info.signature.signedBy}`
        : info.signature.signed
          ? 'signed (give --public-key to see by whom)'
          : 'not signed'
      const lines = [`${info.name}  Kubernetes ${info.kubernetes}, ${info.platform}, ${formatBytes(info.size)}, ${signature}`]
      if (info.delta)
        lines.push(
          `a delta from ${info.delta.base}: ${info.delta.files} files (${formatBytes(info.delta.bytes)}) are left to it, marked "in ${info.delta.base}" below`,
        )
      lines.push('files:')
      lines.push(
        table(
          info.files.map((f) => [f.name, f.version, f.size !== undefined ? formatBytes(f.size) : '?', f.base ? `${f.path} (in ${f.base})` : f.path]),
        ).trimEnd(),
      )
      if (info.packages.length) {
        lines.push('OS packages:')
        lines.push(table(info.packages.map((p) => [p.release, `${p.count} packages`, formatBytes(p.bytes)])).trimEnd())
      }
      lines.push(`images: ${info.images.length}${info.imageBytes ? `, ${formatBytes(info.imageBytes)} (each shared layer once)` : ''}`)
      lines.push(
        table(
          info.images.map((im) => [
            im.ref,
            im.manifest ? `${info.platform} manifest ${im.manifest.slice(0, 19)}` : '',
            im.digest ? `pinned ${im.digest.slice(0, 19)}` : '(digest resolved at build)',
          ]),
        ).trimEnd(),
      )
      out(`${lines.join('\n')}\n`)
    })
  program
    .command('version')
    .description("print kube-airgap's version")
    .addHelpText('after', `\nExamples:\n  bundle version`)
    .action(() => out(`kube-airgap ${TOOL_VERSION}\n`))

  program
    .command('versions')
    .description('list the Kubernetes versions this kube-airgap can build bundles for (its kubeadm image table)')
    .option('--json', 'print the result as JSON')
    .addHelpText('after', '\nExamples:\n  bundle versions     # then set kubernetes: in the manifest to one of them and run bundle lock')
    .action(async (opts: { json?: boolean }) => {
      const versions = Object.keys(loadYaml(await readFile(KUBEADM_TABLE, 'utf8'), KUBEADM_TABLE) as Record<string, unknown>)
      if (opts.json) return printJson({ ok: true, versions })
      out(`${versions.join('\n')}\n`)
    })
  addCompletionCommand(program, 'bundle', {}, out)
  return program
}

/** The mirror options `bundle lock` and `bundle build` share (one Option per command: commander keeps state in it). */
const mirrorOption = () => new Option('--mirror <from=to>', 'fetch URLs starting with FROM from TO instead (repeatable)').argParser(collect).default([])
const registryMirrorOption = () =>
  new Option(
    '--registry-mirror <host=url>',
    "send one registry's requests to URL (a path is a repository prefix; HOST/REPOSITORY=URL for one repository; repeatable)",
  )
    .argParser(collect)
    .default([])
const mirrorsFileOption = () =>
  new Option(
    '--mirrors <file>',
    `a mirrors file with every --mirror and --registry-mirror of a site (default: $${MIRRORS_ENV}); manifests/mirrors/china.yaml for users in China`,
  )

/** Rows as aligned columns, two spaces apart, each line indented by two. */
function table(rows: string[][]): string {
  const widths = rows.reduce<number[]>((w, r) => r.map((c, i) => Math.max(w[i] ?? 0, c.length)), [])
  return rows.map((r) => `  ${r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]!))).join('  ')}\n`).join('')
}

/** What to do with a built bundle: what to copy, and the commands on the nodes. */
function nextSteps(r: BuildResult): string {
  const tar = r.bundle.split('/').pop()!
  const copy = r.parts ? `${r.parts.map((p) => p.split('/').pop()).join(' ')} and ${r.partsFile!.split('/').pop()}` : `${tar} and ${tar}.sha256`
  // Signed: only the verifier carried apart from the stick unpacks it. Unsigned: tar, never keeping the tar's owners or modes.
  const unpack = r.signedBy
    ? `kube-airgap-verify --extract . ${r.parts ? r.partsFile!.split('/').pop() : tar} && cd ${r.name}`
    : `${r.parts ? `cat ${tar}.??? > ${tar} && ` : `sha256sum -c ${tar}.sha256 && `}tar xf ${tar} --no-same-owner --no-same-permissions && cd ${r.name}`
  const facts = [
    r.signedBy ? `signed by ${r.signedBy}: check it with kube-airgap-verify (carried apart from the stick)` : 'not signed (bundle build --sign KEY to sign)',
    r.packages.length
      ? `${r.packages.reduce((n, p) => n + p.count, 0)} OS packages for ${r.packages.map((p) => p.release).join(', ')}`
      : 'no OS packages (the nodes need conntrack, socat, ... already)',
  ]
  if (r.delta)
    return [
      `        a delta: ${r.delta.files} files (${formatBytes(r.delta.bytes)}) left to ${r.delta.base}, which the nodes must still have; ${facts.join('; ')}`,
      `next:   copy ${copy} to the stick; on each node, beside ${r.delta.base}/:`,
      `        ${unpack}`,
      '        sudo ./install upgrade          (the first master, then the other masters, then the workers)',
      '',
    ].join('\n')
  return [
    `        ${facts.join('; ')}`,
    `next:   copy ${copy} to the stick; on each node:`,
    `        ${unpack}`,
    '        sudo ./install --role master        (the first master; then on the others:)',
    '        sudo ./install --role worker --join-file join/worker.yaml',
    '',
  ].join('\n')
}

async function readKey(path: string): Promise<string> {
  return readFile(path, 'utf8').catch(() => {
    throw new KaError('EUSAGE', `--public-key ${path}: cannot read it`)
  })
}

function partsError(check: PartsCheck): KaError {
  const [first, ...rest] = check.problems
  return new KaError('EVERIFY', `${check.tarName}: ${first!.path}: ${first!.problem}${rest.length ? ` (and ${rest.length} more)` : ''}`, {
    problems: check.problems,
  })
}

/** Runs `bundle` with these arguments (argv[2] on); returns the exit status. */
export async function main(argv: string[], io: Io = processIo): Promise<number> {
  try {
    await makeProgram(io).parseAsync(argv, { from: 'user' })
    return 0
  } catch (e) {
    return reportFailure('bundle', e, argv.includes('--json'), io)
  }
}

await runWhenExecuted(import.meta.url, main)
