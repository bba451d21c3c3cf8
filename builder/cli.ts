#!/usr/bin/env node
import { existsSync } from 'node:fs'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { Argument, Command, Option } from 'commander'
import type { BuildFlags } from './commands/build.js'
import type { LockFlags } from './commands/lock.js'
import { completionHelp, completionScript, SHELLS, type Shell } from '../bundle/completion.js'
import { commanderOutput, processIo, reportFailure, runWhenExecuted, type Io } from '../bundle/report.js'
import { PLATFORMS } from '../bundle/platform.js'
import { TOOL_VERSION } from '../bundle/version.js'
import { VERIFIER_NAME } from './pack/verifier.js'
import { Cache } from './download/cache.js'
import { MIRRORS_ENV } from './mirrors.js'

/** The package's own folder: where the embedded default lock and manifest live. */
const PACKAGE_DIR = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..')

/** A file in the current folder wins; else the one shipped with kube-airgap. */
const defaultPath = (rel: string): string => (existsSync(rel) ? rel : join(PACKAGE_DIR, rel))

const collect = (v: string, prev: string[]): string[] => [...prev, v]

/**
 * The command line, mapped onto the builder's core calls; output through `io`. Each command's
 * module is loaded when it runs: a build does not pay for loading `lock`, `verify` and `inspect`.
 */
function makeProgram(io: Io): Command {
  const program = new Command('bundle')
    .description('Build and check air-gapped Kubernetes bundles (kube-airgap).')
    .exitOverride()
    .configureOutput(commanderOutput('bundle', io, 'bundle'))
    .addHelpText(
      'after',
      '\nExamples:\n  bundle build                       # the embedded lock: dist/kube-airgap-v1.29.3-linux-amd64.tar\n  bundle lock --manifest my.yaml     # then: bundle build --lock bundle.lock.json\n  bundle <command> --help            # each command, with examples',
    )
    .version(`kube-airgap ${TOOL_VERSION}`, '-V, --version', 'print the version')
  addInternetCommands(program, io)
  addKeyCommands(program, io)
  addBundleCommands(program, io)
  addAboutCommands(program, io)
  return program
}

/** The commands that go to the internet: lock and build. */
function addInternetCommands(program: Command, io: Io): void {
  program
    .command('lock')
    .description('resolve a manifest into a lock: every file with its URL and sha256, every image with its digest')
    .addHelpText(
      'after',
      `\nExamples:\n  bundle lock                                   # manifests/default.yaml -> bundle.lock.json\n  bundle lock --manifest my.yaml --out my.lock.json --mirrors manifests/mirrors/china.yaml\n  bundle lock --manifest manifests/kubernetes-1.36.yaml --out v1.36.lock.json --check-images   # the table against kubeadm v1.36`,
    )
    .option('--manifest <file>', 'the manifest to lock', defaultPath('manifests/default.yaml'))
    .option('--out <file>', 'where to write the lock', 'bundle.lock.json')
    .addOption(mirrorOption())
    .addOption(registryMirrorOption())
    .addOption(mirrorsFileOption())
    .option('--cache <dir>', 'the download cache', Cache.defaultRoot())
    .option('--concurrency <n>', 'connections at once: every request holds one (1-64)', '8')
    .option('--keyring <file>', 'also trust this OpenPGP keyring for the OS package archives (a mirror that signs its own indexes; repeatable)', collect, [])
    .option('--no-kubeadm', "take kubeadm's image list from manifests/kubeadm-images.yaml instead of running the pinned kubeadm")
    .option('--check-images', 'fail unless manifests/kubeadm-images.yaml agrees with what the pinned kubeadm lists for the version')
    .option('--json', 'print the result as JSON')
    .action(async (opts: LockFlags) => (await import('./commands/lock.js')).lockCommand(opts, io))

  program
    .command('build')
    .description('download everything the lock pins, check it, and write one self-verifying bundle tar')
    .addHelpText(
      'after',
      `\nExamples:\n  bundle build                                  # the embedded lock, linux/amd64, into dist/\n  bundle build --platform linux/arm64 --os ubuntu-22.04 --sign keys/kube-airgap.key\n  bundle build --media fat32 --mirrors manifests/mirrors/china.yaml\n  bundle build --lock v1.30.lock.json --upgrade-from kube-airgap-v1.29.3-linux-amd64/bundle.lock.json   # a delta: only what the old bundle lacks\n  bundle lock --manifest apps.yaml --out apps.lock.json && bundle build --lock apps.lock.json   # an image bundle of your own images`,
    )
    .option('--lock <file>', 'the lock to build', defaultPath('bundle.lock.json'))
    .addOption(new Option('--platform <platform>', 'the platform of the nodes').choices([...PLATFORMS]).default('linux/amd64'))
    .option('--out <dir>', 'where to write the bundle', 'dist')
    .option('--cache <dir>', 'the download cache, shared by all builds', Cache.defaultRoot())
    .addOption(mirrorOption())
    .addOption(registryMirrorOption())
    .addOption(mirrorsFileOption())
    .option('--concurrency <n>', 'connections at once: every request and every range of a split download holds one (1-64)', '8')
    .option('--sign <key>', 'sign the bundle with this Ed25519 private key (from bundle keygen)')
    .option('--split <size>', 'cut the tar into parts of SIZE (e.g. 3900M) with NAME.parts.sha256')
    .addOption(new Option('--media <kind>', 'fat32: parts that fit a FAT32 stick (4095 MiB); exfat: one tar').choices(['fat32', 'exfat']))
    .option('--os <releases>', 'carry OS packages only for these releases (comma separated, e.g. ubuntu-22.04,debian-12); default: every release the lock has')
    .option('--images-only', "an image bundle: only the lock's images, for ./install images on a running node (a lock of images alone builds one anyway)")
    .option('--upgrade-from <lock>', "a delta bundle: leave out what the bundle of this older lock holds (best: that bundle's own bundle.lock.json)")
    .option('--json', 'print the result as JSON')
    .action(async (opts: BuildFlags) => (await import('./commands/build.js')).buildCommand(opts, io))
}

/** The signing keys and the standalone verifier that carries one. */
function addKeyCommands(program: Command, io: Io): void {
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
    .action(async (opts: { out: string }) => (await import('./commands/keys.js')).keygenCommand(opts, io))

  program
    .command('verifier')
    .description(`write ${VERIFIER_NAME}, the standalone verifier, for an existing public key`)
    .requiredOption('--public-key <file>', 'the Ed25519 public key the bundles are signed for (required)')
    .option('--out <file>', 'where to write it', VERIFIER_NAME)
    .addHelpText('after', `\nExamples:\n  bundle verifier --public-key kube-airgap.pub --out /media/trusted/${VERIFIER_NAME}`)
    .action(async (opts: { publicKey: string; out: string }) => (await import('./commands/keys.js')).verifierCommand(opts, io))
}

/** The commands that read a bundle that is already built. */
function addBundleCommands(program: Command, io: Io): void {
  program
    .command('join')
    .description('join split parts (NAME.tar.000 ...) into NAME.tar after checking each; `cat NAME.tar.* > NAME.tar` does the same without the checks')
    .addHelpText('after', `\nExamples:\n  bundle join kube-airgap-v1.29.3-linux-amd64.parts.sha256 --out kube-airgap-v1.29.3-linux-amd64.tar`)
    .argument('<parts>', 'NAME.parts.sha256 or NAME.tar.000')
    .option('--out <file>', 'the tar to write (default: beside the parts)')
    .action(async (path: string, opts: { out?: string }) => (await import('./commands/join.js')).joinCommand(path, opts, io))

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
    .action(async (path: string, opts: { publicKey?: string; requireSignature?: boolean; json?: boolean }) =>
      (await import('./commands/verify.js')).verifyCommand(path, opts, io),
    )

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
    .action(async (path: string, opts: { json?: boolean; sbom?: boolean; out?: string; publicKey?: string }) =>
      (await import('./commands/inspect.js')).inspectCommand(path, opts, io),
    )
}

/** What kube-airgap is: its version, the Kubernetes versions it builds, completion. */
function addAboutCommands(program: Command, io: Io): void {
  const out = (s: string) => io.out(s)
  program
    .command('version')
    .description("print kube-airgap's version")
    .addHelpText('after', `\nExamples:\n  bundle version`)
    .action(() => out(`kube-airgap ${TOOL_VERSION}\n`))

  program
    .command('versions')
    .description(
      'the Kubernetes versions whose kubeadm images the table knows, and which containerd, Calico, crictl, runc and CNI plugins fit each (with the sources)',
    )
    .option('--json', 'print the result as JSON')
    .addHelpText('after', '\nExamples:\n  bundle versions     # then write a manifest whose versions fit, and run bundle lock\n  bundle versions --json')
    .action(async (opts: { json?: boolean }) => (await import('./commands/versions.js')).versionsCommand(opts, io))
  const help = completionHelp('bundle')
  program
    .command('completion')
    .description(help.description)
    .addArgument(new Argument('<shell>', 'bash or zsh').choices(SHELLS))
    .addHelpText('after', help.examples)
    .action((shell: Shell) => out(completionScript(shell, program, 'bundle')))
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
